#!/usr/bin/env python3
"""Lists the functions pgsluice runs per transaction, for the linker to lay out together.

    python3 integration/hot_symbols.py --binary PATH --out FILE LONG:SHORT [LONG:SHORT ...]

Each LONG:SHORT is a pair of callgrind output files of one workload, a long run and a
short one (`integration/ryw_instructions.py --annotate DIR` keeps them as
`*-long.callgrind` and `*-short.callgrind`). A function whose instruction count is higher
in the long run than in the short one runs per transaction; the others ran at startup,
at login, or not at all. The functions per transaction are written to FILE as the
binary's (mangled) symbol names, hottest first, one per line: `build.rs` hands the file
to the linker (`--symbol-ordering-file`), which places those functions next to each
other at the start of the code.

Why: at a few hundred transactions a second on cores it shares with PostgreSQL,
pgsluice wakes up with its code out of the caches, and what a transaction costs follows
the lines and pages of code it touches more than its instructions (BENCHMARKS.md,
issue 15, tenth and eleventh rounds). Laid out in link order, the functions of one
transaction are spread over most of the binary's 10 MB of code.

Names are matched on their demangled form (callgrind's against `nm -C`'s, both without
the crate hashes), so a generic function matches every instance of it; a name that
matches no symbol (a function of libc, or one inlined away) is skipped. Symbols the file
names that a later build no longer has are ignored by the linker: a stale file costs
only the layout.
"""

import argparse
import collections
import re
import subprocess
import sys


def costs(path):
    """Exclusive instructions per function of one callgrind file (recursion levels merged)."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    c = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*) \[(.*)\]\s*$", line)
        if not m:
            continue
        name = m.group(2)
        # "file:function" or "???:function"; Rust paths contain "::", file names do not.
        head, sep, rest = name.partition(":")
        if sep and not rest.startswith(":"):
            name = rest
        name = re.sub(r"'\d+$", "", name)
        c[name] += int(m.group(1).replace(",", ""))
    return c


def symbols(binary):
    """Demangled name -> mangled names of the binary's functions."""
    def nm(*flags):
        out = subprocess.run(["nm", "--defined-only", *flags, binary],
                             capture_output=True, text=True, check=True).stdout
        return out.splitlines()
    by_name = collections.defaultdict(list)
    for raw, pretty in zip(nm(), nm("-C")):
        parts, pparts = raw.split(" ", 2), pretty.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tT" and len(pparts) == 3:
            by_name[pparts[2]].append(parts[2])
    return by_name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("pairs", nargs="+", help="LONG:SHORT callgrind files")
    args = ap.parse_args()
    hot = collections.Counter()
    for pair in args.pairs:
        long_path, short_path = pair.split(":")
        lc, sc = costs(long_path), costs(short_path)
        for name, n in lc.items():
            if n > sc.get(name, 0):
                hot[name] += n - sc.get(name, 0)
    by_name = symbols(args.binary)
    out, missed = [], 0
    for name, _ in hot.most_common():
        mangled = by_name.get(name)
        if mangled:
            out.extend(mangled)
        else:
            missed += 1
    with open(args.out, "w") as f:
        f.write("".join(s + "\n" for s in dict.fromkeys(out)))
    print(f"hot_symbols: {len(hot)} functions run per transaction, {len(hot) - missed} "
          f"found in {args.binary} ({len(out)} symbols), {missed} not (libc, inlined)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
