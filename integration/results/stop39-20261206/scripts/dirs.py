# Per direction: from the exit of the blocking epoll_wait to the exit of the sendto that follows.
import subprocess, sys, re, statistics
data = sys.argv[1]
out = subprocess.run(["perf","script","-i",data,"-F","tid,time,event,trace","--ns"],capture_output=True,text=True).stdout
seq=[]; cur=None
import collections
rows=[]
for line in out.splitlines():
    m = re.match(r"\s*(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)", line)
    if m: rows.append((int(m[1]), float(m[2]), m[3], m[4]))
tid = collections.Counter(r[0] for r in rows if r[2].startswith("raw")).most_common(1)[0][0]
for t_id,t,e,rest in rows:
    if t_id!=tid: continue
    if e.startswith("raw_syscalls:sys_enter"): cur=(int(re.search(r"NR (\d+)",rest)[1]),t)
    elif e.startswith("raw_syscalls:sys_exit") and cur: seq.append((cur[0],cur[1],t)); cur=None
spans=[]; nested=[]
i=0
while i < len(seq):
    nr,a,b = seq[i]
    if nr==232 and (b-a)>2e-6:  # a blocking epoll_wait
        j=i+1
        if j<len(seq) and seq[j][0]==232: nested.append((seq[j][2]-seq[j][1])*1e6)
        while j<len(seq) and seq[j][0]!=44: j+=1
        if j<len(seq) and j-i<=5: spans.append((seq[j][2]-b)*1e6)
        i=j
    i+=1
spans.sort()
print(f"{data.split('/')[-1]}: {len(spans)} spans: median {statistics.median(spans):.3f} p90 {spans[len(spans)*9//10]:.3f} p99 {spans[len(spans)*99//100]:.3f}; nested epoll_wait median {statistics.median(nested) if nested else 0:.3f}")
