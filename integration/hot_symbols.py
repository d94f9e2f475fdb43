#!/usr/bin/env python3
"""Lists the functions pgsluice runs per transaction, for the linker to lay out together.

    python3 integration/hot_symbols.py --binary PATH --out FILE LONG:SHORT [LONG:SHORT ...]
    python3 integration/hot_symbols.py --binary PATH --out FILE --append LONG:SHORT ...
    python3 integration/hot_symbols.py --check PATH [--list FILE]
    python3 integration/hot_symbols.py --remap OLD NEW [--list FILE]

Each LONG:SHORT is a pair of callgrind output files of one workload, a long run and a
short one (`integration/ryw_instructions.py --annotate DIR` keeps them as
`*-long.callgrind` and `*-short.callgrind`). A function whose instruction count is higher
in the long run than in the short one runs per transaction; the others ran at startup,
at login, or not at all. The functions per transaction are written to FILE as the
binary's (mangled) symbol names, hottest first, one per line: `build.rs` hands the file
to the linker (`--symbol-ordering-file`), which places those functions next to each
other at the start of the code.

`--append` keeps FILE as it is and adds, at its end, the functions of the given pairs it
does not list yet: the list in link/ is the transaction's functions (pairs from
`ryw_instructions.py`) followed by a new connection's (stop 40: the pair
`NAME-conn-120.out:NAME-conn-20.out` that `integration/conn_instructions.py` keeps), so
that a connection's login, greeting and end lie together after the transaction's code
(cachegrind's simulated 256-KiB last-level cache: 265 -> 197 code misses per
`pgbench -C` connection).

Why: at a few hundred transactions a second on cores it shares with PostgreSQL,
pgsluice wakes up with its code out of the caches, and what a transaction costs follows
the lines and pages of code it touches more than its instructions (BENCHMARKS.md,
issue 15, tenth and eleventh rounds). In link order, the functions of one transaction
lay on 471 4-KiB pages of the binary's 10 MB of code; laid out, on 201.

Names are matched on their demangled form (callgrind's against `nm -C`'s, both without
the crate hashes), so a generic function matches every instance of it; a name that
matches no symbol (a function of libc, or one inlined away) is skipped. Symbols the file
names that a later build no longer has are ignored by the linker: a stale file costs
only the layout.

The names carry hashes that follow the crate's build metadata, not its code: a
`cargo build --release` of a later commit has the same names for the functions it did not
rename, but `cargo test --release` builds the binary with the dev-dependencies' features
too, under other hashes, and it is then not laid out (nor is the binary it leaves in
target/release: benchmarks run a binary from `cargo build --release`). `--check PATH`
says how many of the list's symbols a binary has and over how many 4-KiB pages they lie.

The hashes also follow the crate's dependencies: a new dependency renames every symbol,
and the list then lays out nothing. `--remap OLD NEW` carries the list over without new
profiles: each symbol is looked up by its demangled name in OLD (a build the list was
made for) and replaced by NEW's symbols of that name, in the same order (the list is
rewritten in place).
"""

import argparse
import collections
import os
import re
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
        _, sep, rest = name.partition(":")
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
    # Both listings in address order, so that line k of one is line k of the other (a
    # pair whose addresses differ is skipped rather than matched wrongly).
    for raw, pretty in zip(nm("-n"), nm("-n", "-C")):
        parts, pparts = raw.split(" ", 2), pretty.split(" ", 2)
        if (len(parts) == 3 and len(pparts) == 3 and parts[1] in "tT"
                and parts[:2] == pparts[:2]):
            by_name[pparts[2]].append(parts[2])
    return by_name


def check(binary, path):
    """How many of the list's symbols `binary` has, and the 4-KiB pages they span."""
    with open(path) as f:
        wanted = set(f.read().split())
    out = subprocess.run(["nm", "-S", "--defined-only", binary],
                         capture_output=True, text=True, check=True).stdout
    found, pages = 0, set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in wanted:
            found += 1
            start, size = int(parts[0], 16), int(parts[1], 16)
            pages.update(range(start >> 12, ((start + max(size, 1) - 1) >> 12) + 1))
    print(f"{binary}: {found} of the {len(wanted)} symbols of {path}, "
          f"on {len(pages)} 4-KiB pages")


def remap(old, new, path):
    """Rewrites the list at `path`, made for binary `old`, with binary `new`'s names."""
    old_names = {m: name for name, ms in symbols(old).items() for m in ms}
    new_by_name = symbols(new)
    with open(path) as f:
        listed = f.read().split()
    out, missed = [], 0
    for m in listed:
        name = old_names.get(m)
        if name is None or name not in new_by_name:
            missed += 1
            continue
        out.extend(new_by_name[name])
    with open(path, "w") as f:
        f.write("".join(s + "\n" for s in dict.fromkeys(out)))
    print(f"hot_symbols: {len(listed) - missed} of {len(listed)} symbols carried over "
          f"({len(dict.fromkeys(out))} in {new}), {missed} not found", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary")
    ap.add_argument("--out")
    ap.add_argument("--check", metavar="BINARY", help="report how BINARY lays out the list")
    ap.add_argument("--remap", nargs=2, metavar=("OLD", "NEW"),
                    help="carry the list over from binary OLD's names to NEW's")
    ap.add_argument("--list", default=os.path.join(ROOT, "link", "hot-symbols.txt"))
    ap.add_argument("--append", action="store_true",
                    help="add the pairs' functions missing from --out at its end")
    ap.add_argument("pairs", nargs="*", help="LONG:SHORT callgrind files")
    args = ap.parse_args()
    if args.check:
        check(args.check, args.list)
        return
    if args.remap:
        remap(*args.remap, args.list)
        return
    if not (args.binary and args.out and args.pairs):
        ap.error("--binary, --out and LONG:SHORT pairs (or --check BINARY)")
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
    kept = []
    if args.append and os.path.exists(args.out):
        with open(args.out) as f:
            kept = f.read().split()
    with open(args.out, "w") as f:
        f.write("".join(s + "\n" for s in dict.fromkeys(kept + out)))
    print(f"hot_symbols: {len(hot)} functions run per transaction, {len(hot) - missed} "
          f"found in {args.binary} ({len(out)} symbols), {missed} not (libc, inlined)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
