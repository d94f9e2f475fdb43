import re, subprocess, sys, collections
def load(fn):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", fn], capture_output=True, text=True).stdout
    d = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)$", line)
        if m and ":" in m.group(2) and "=>" not in m.group(2):
            d[re.sub(r" \[.*\]$", "", m.group(2))] += int(m.group(1).replace(",", ""))
    return d
a = load(sys.argv[1]); b = load(sys.argv[2]); n = float(sys.argv[3])
diff = {k: (b[k] - a[k]) / n for k in set(a) | set(b)}
tot = sum(diff.values())
print(f"total {tot:.0f}")
for k, v in sorted(diff.items(), key=lambda kv: -kv[1])[:int(sys.argv[4]) if len(sys.argv) > 4 else 60]:
    print(f"{v:8.1f}  {k[:150]}")
