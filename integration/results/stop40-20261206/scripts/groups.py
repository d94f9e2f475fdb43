"""Groups one cachegrind event's per-connection difference by part of the program:
    python3 groups.py SHORT.cachegrind LONG.cachegrind EVENT"""
import collections, re, subprocess, sys, os
here = os.path.dirname(os.path.abspath(__file__))
out = subprocess.run([sys.executable, os.path.join(here, "csdiff.py"), sys.argv[1], sys.argv[2], sys.argv[3], "5000"],
                     capture_output=True, text=True, check=True).stdout
parts = [("log", r"tracing|logfmt|fmt::|Escaped|Visit|record"), ("tokio", r"^tokio|<tokio"),
         ("malloc", r"malloc|free|memalign|_int_|unlink_chunk|consolidate"), ("libc mem", r"mem(cpy|move|cmp|set)"),
         ("login/auth", r"login|auth|md5|negotiate|startup"), ("accept/open", r"client::open|spawn_client|listener"),
         ("session loop", r"lot"), ("session (driver, core)", r"driver|pgsluice::client::core"), ("pool", r"pool"),
         ("pgsluice, other", r"pgsluice")]
c = collections.Counter()
for line in out.splitlines()[1:]:
    m = re.match(r"\s*(-?[\d.]+)\s+(.*)", line)
    if m:
        name = m.group(2)
        c[next((k for k, p in parts if re.search(p, name)), "other (std, core, libc)")] += float(m.group(1))
print(f"{sys.argv[3]} per connection by part (total {sum(c.values()):.0f})")
for k, v in c.most_common():
    print(f"{v:8.0f}  {k}")
