#!/usr/bin/env python3
"""Summarise `strace -f -k -e trace=futex,write` output: per syscall kind, the most
common call chains (innermost pgsluice frames), per transaction."""
import collections, re, sys

path, tx = sys.argv[1], int(sys.argv[2])
events, cur = [], None
for line in open(path, errors="replace"):
    if line.lstrip().startswith(">"):
        if cur is not None:
            m = re.search(r"\(([^)]*?)(\+0x[0-9a-f]+)?\)\s*\[", line)
            name = m.group(1) if m else line.strip()[:80]
            name = re.sub(r"::h[0-9a-f]{16}$", "", name)
            cur[1].append(name)
        continue
    m = re.match(r"\s*\d+\s+(futex|write)\((.*)", line)
    if m:
        if cur: events.append(cur)
        op = m.group(1)
        if op == "futex":
            k = re.search(r"FUTEX_\w+", m.group(2))
            op += " " + (k.group(0) if k else "?")
        cur = [op, []]
    else:
        if cur: events.append(cur)
        cur = None
if cur: events.append(cur)

def interesting(frames):
    keep = [f for f in frames if f and not f.startswith(("syscall", "__", "_start", "clone", "start_thread"))
            and "libc.so" not in f]
    pick = [f for f in keep if any(s in f for s in ("pgsluice", "tokio::runtime", "std::sys::sync", "mio::"))]
    return " < ".join(x[:90] for x in (pick or keep)[:5])

by = collections.Counter((op, interesting(fr)) for op, fr in events)
ops = collections.Counter(op for op, _ in events)
for op, n in ops.most_common():
    print(f"{op}: {n} calls, {n / tx:.2f} per transaction")
print()
for (op, chain), n in by.most_common(14):
    print(f"{n / tx:5.2f}/txn  {op}  {chain}")
