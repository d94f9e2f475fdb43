# Typical per-transaction syscall sequence with median durations, from a perf data file.
import subprocess, sys, re, statistics, collections
NAMES = {0:"read",1:"write",44:"sendto",45:"recvfrom",46:"sendmsg",47:"recvmsg",232:"epoll_wait",281:"epoll_pwait",441:"epoll_pwait2",7:"poll",270:"pselect6",202:"futex",228:"clock_gettime",23:"select"}
data = sys.argv[1]
out = subprocess.run(["perf","script","-i",data,"-F","tid,time,event,trace","--ns"],capture_output=True,text=True).stdout
ev = collections.defaultdict(list)
for line in out.splitlines():
    m = re.match(r"\s*(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)", line)
    if not m: continue
    tid, t, e, rest = int(m[1]), float(m[2]), m[3], m[4]
    ev[tid].append((t, e, rest))
tid = max(ev, key=lambda k: len(ev[k]))
seq = []  # (name, enter, exit)
cur = None
switches = []
for t, e, rest in ev[tid]:
    if e.startswith("raw_syscalls:sys_enter"):
        nr = int(re.search(r"NR (\d+)", rest)[1]); cur = (NAMES.get(nr, str(nr)), t)
    elif e.startswith("raw_syscalls:sys_exit") and cur:
        seq.append((cur[0], cur[1], t)); cur = None
# transaction = segment starting at each recv from client... we take pattern by names
names = [s[0] for s in seq]
# count per syscall and durations
by = collections.defaultdict(list)
for n, a, b in seq: by[n].append((b-a)*1e6)
total_t = seq[-1][2]-seq[0][1]
sends = sum(1 for n in names if n in ("sendto","sendmsg","write"))
txns = sends/2
print(f"thread {tid}: {len(seq)} syscalls over {total_t:.2f}s, ~{txns:.0f} txns (sends/2)")
for n, d in sorted(by.items(), key=lambda x:-len(x[1])):
    print(f"  {n:12s} {len(d)/txns:5.2f}/txn  median {statistics.median(d):7.3f} us  p10 {sorted(d)[len(d)//10]:6.3f}")
# user gaps labelled by (prev, next)
gaps = collections.defaultdict(list)
for (n1,a1,b1),(n2,a2,b2) in zip(seq, seq[1:]):
    gaps[(n1,n2)].append((a2-b1)*1e6)
print("  user gaps (prev -> next): count/txn, median us")
for k, d in sorted(gaps.items(), key=lambda x:-len(x[1]))[:10]:
    print(f"    {k[0]:>11s} -> {k[1]:<11s} {len(d)/txns:5.2f}  {statistics.median(d):6.3f}")
# common 8-grams
grams = collections.Counter(tuple(names[i:i+7]) for i in range(len(names)-7))
print("  top sequence:", grams.most_common(1))
