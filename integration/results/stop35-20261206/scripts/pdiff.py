import re,collections,sys
def load(fn):
    lines=open(fn).read().splitlines()
    h=lines[0].split(); cpu=float(h[3])+float(h[5])
    d=collections.Counter()
    for l in lines[1:]:
        m=re.match(r'\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)',l)
        if m: d[(m.group(2)[:12],m.group(4).strip()[:90])]+=float(m.group(1))*cpu/100
    return d
A,Bc=sys.argv[1],sys.argv[2]
a=collections.Counter();b=collections.Counter()
for r in (0,1):
    a.update(load(f'r{r}-c{A}.txt')); b.update(load(f'r{r}-c{Bc}.txt'))
keys=set(a)|set(b)
us=lambda c,k:c[k]/2
ua=sum(us(a,k) for k in keys if 'kernel' not in k[0]); ub=sum(us(b,k) for k in keys if 'kernel' not in k[0])
print(f"user-space µs/txn: c{A} {ua:.2f}  c{Bc} {ub:.2f}")
for k in sorted(keys,key=lambda k:-(us(b,k)-us(a,k)))[:30]:
    print(f"{us(a,k):6.3f} {us(b,k):6.3f} {us(b,k)-us(a,k):+6.3f} {k[0]} {k[1]}")
print('...')
for k in sorted(keys,key=lambda k:(us(b,k)-us(a,k)))[:10]:
    print(f"{us(a,k):6.3f} {us(b,k):6.3f} {us(b,k)-us(a,k):+6.3f} {k[0]} {k[1]}")
