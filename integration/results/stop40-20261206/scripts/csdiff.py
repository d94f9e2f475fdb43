"""Per-function difference of two cachegrind files (long - short) / N, for one event."""
import sys, collections
def load(fn):
    d = collections.defaultdict(lambda: [0]*9); cur = None; ev = None
    for l in open(fn):
        if l.startswith("events:"): ev = l.split()[1:]
        elif l.startswith("fn="): cur = l[3:].strip()
        elif l[:1].isdigit() and cur:
            p = l.split()[1:]
            row = d[cur]
            for i, x in enumerate(p): row[i] += int(x)
    return d, ev
a, ev = load(sys.argv[1]); b, _ = load(sys.argv[2]); col = ev.index(sys.argv[3]); n = float(sys.argv[5]) if len(sys.argv) > 5 else 1000
diff = {k: (b[k][col] - a[k][col]) / n for k in set(a) | set(b)}
print(sys.argv[3], "total", round(sum(diff.values())))
for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:int(sys.argv[4])]:
    print(f"{v:8.1f}  {k[:150]}")
