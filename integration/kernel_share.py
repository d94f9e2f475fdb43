#!/usr/bin/env python3
"""Where each pooler's kernel time per transaction goes, and what another I/O model could save.

    python3 integration/kernel_share.py [--binary PATH] [--pgbouncer-new PATH]
                                        [--modes simple,extended] [--duration N] [--rounds N]

The cluster, configs and pgbench runs of integration/bench.py (`pgbench -n -S -c 50 -j 2`,
transaction mode, pool size 20, one PostgreSQL primary). For each pooler (PgBouncer 1.18,
the newer PgBouncer when given, pgsluice) in turn, each mode, each round: one pgbench run
while `perf record -g -F 2999 -p PID` samples the pooler (user and kernel),
and the pooler's utime and stime over the run (`/proc/PID/stat`) divided by its
transactions. The kernel's samples are sorted into classes by the innermost frame that is
not a lock or the re-enabling of interrupts (see GENERIC):

  entry  entering and leaving system calls, the calls' own wrappers and file lookups
  epoll  epoll_wait and readiness bookkeeping
  sched  sleeping and being woken, and waking others (a socket's reader included)
  net    TCP/IP and the loopback device, sockets, their buffers and memory
  copy   copying to and from user memory
  other  the rest (timers, interrupts, accounting)

A batched-submission I/O model (io_uring, say) can save `entry` and `epoll`, not `net` or
`copy`: the same bytes still cross the same loopback TCP connections, in the same
segments. The report gives, per pooler, the system time per transaction split by these
shares (of its kernel samples) and pgsluice's floor under such a model: its user time plus
its kernel time less `entry` and `epoll`, against 0.8 x each PgBouncer's total (issue 14's
CPU row). `sched` is left in the floor: a pooler that waits for the next request still
sleeps and is woken (busy polling, which would not, spends a core to save it).

Raw `perf report` output and the table go to integration/results/kernel-<UTC timestamp>/.
"""

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

CLASSES = ("entry", "epoll", "sched", "net", "copy", "other")

# First match wins; symbols as `perf report` prints them, without `.isra.0`-style suffixes.
PATTERNS = [
    # The loopback device's receive queue, before the "enqueue_" of the scheduler.
    ("net", r"^(enqueue_to_backlog|process_backlog)$"),
    # Waking the task that waits on a socket (the peer's read, or epoll): the wake-up runs
    # with interrupts off and is charged here.
    ("sched", r"^(sock_def_readable|sock_def_write_space|sk_stream_write_space)$"),
    ("epoll", r"^(ep_|do_epoll|__x64_sys_epoll|__do_sys_epoll|epoll_|__ep_)"),
    ("copy", r"(copy_user|^_copy_|copy_to_iter|copy_from_iter|^rep_movs|^memcpy|^memmove"
             r"|^skb_copy_datagram|^simple_copy_to_iter|^__check_object_size|^check_heap_object"
             r"|^__virt_addr_valid|^copyin|^copyout|^clear_user)"),
    ("sched", r"^(schedule|__schedule|finish_task_switch|try_to_wake_up|__wake_up|wake_up"
              r"|ttwu_|enqueue_|dequeue_|pick_next|update_curr|update_load|__update_load"
              r"|select_task_rq|set_next_entity|put_prev|psi_|sched_|__sched|prepare_task_switch"
              r"|switch_mm|__switch_to|switch_fpu|context_switch|check_preempt|resched|reweight"
              r"|update_cfs|__enqueue|__dequeue|account_entity|available_idle_cpu"
              r"|autoremove_wake|default_wake|pollwake|schedule_hrtimeout|hrtimer_wakeup"
              r"|native_smp_send_reschedule|__smp_call|x2apic_send_IPI|call_function|llist_"
              r"|raw_spin_rq|update_rq_clock|newidle_balance|sched_balance|__cgroup_account"
              r"|cpuacct_|cgroup_rstat|kick_process|__pv_queued|queued_spin|native_queued)"),
    ("net", r"^(tcp|__tcp|ip_|__ip_|ipv4_|inet|__inet|sock_|__sock|sk_|__sk_|skb|__skb|kfree_skb"
            r"|__kfree_skb|consume_skb|napi|__napi|net_|__net|netif|__netif|dev_|__dev_"
            r"|loopback|validate_xmit|nf_|__nf_|security_sock|security_socket|bbr_|cubictcp"
            r"|lock_sock|release_sock|__release_sock|__x64_sys_sendmsg|__x64_sys_recvfrom"
            r"|__x64_sys_sendto|__sys_sendmsg|___sys_sendmsg|__sys_recvfrom|__sys_sendto"
            r"|sendmsg|recvmsg|____sys_sendmsg|sock_sendmsg|sock_recvmsg|raw_local_deliver"
            r"|eth_|page_frag|alloc_skb|__alloc_skb|kmem_cache|kmalloc|__kmalloc|kfree"
            r"|__slab|slab_|___slab|__memcg|memcg|mod_memcg|obj_cgroup|refill_obj|drain_obj"
            r"|__mod_memcg|percpu_counter|mem_cgroup|rb_|irqtime|do_softirq|__do_softirq"
            r"|__local_bh|local_bh|_raw_spin_unlock_bh|_raw_spin_lock_bh|handle_softirqs"
            r"|neigh|dst_|fib_|rt_|ipv4_dst|selinux_|apparmor_|bpf_|__cgroup_bpf)"),
    ("entry", r"^(entry_SYSCALL|syscall_|do_syscall|__x64_sys_|__do_sys_|__se_sys|x64_sys_call"
              r"|syscall_exit|exit_to_user|__fget|fget|__fdget|fdget|fput|__fput|import_single"
              r"|import_iovec|__import_iovec|iovec_from_user|__get_user|__put_user|rw_verify"
              r"|fsnotify|__fsnotify|security_file|ksys_|vfs_|__audit|audit_|irqentry_exit"
              r"|restore_regs|error_entry|srso_|retbleed|__x86_indirect|__x86_return"
              r"|entry_untrain|clear_bhb|__sys_|__fsnotify_parent|__cond_resched)"),
]
COMPILED = [(c, re.compile(p)) for c, p in PATTERNS]


def classify(sym):
    sym = re.sub(r"\.(isra|constprop|part|cold|lto_priv)\.\d+", "", sym)
    for c, rx in COMPILED:
        if rx.search(sym):
            return c
    return "other"


# Frames passed over to the caller when a kernel sample is classified: locks and the
# re-enabling of interrupts. In a VM without hardware counters perf samples on a timer
# interrupt, which waits while interrupts are off: their work is charged to the unlock
# that turns them back on (`_raw_spin_unlock_irqrestore`), so the caller tells what it was.
GENERIC = re.compile(r"^(_raw_spin_|__raw_spin|raw_spin|__raw_callee_save|_raw_read_|_raw_write_"
                     r"|queued_spin|native_queued|__pv_queued|mutex_|__mutex|__rcu_read|rcu_"
                     r"|preempt_count|__local_bh_enable|local_bh_enable|__cond_resched)")


def sample_class(frames):
    """The class of one kernel sample (frames leaf first): the first frame that is not a
    lock or interrupt re-enable decides."""
    for sym in frames:
        if not GENERIC.search(sym):
            return classify(sym)
    return "other"


def kernel_shares(data, out_txt):
    """(share of samples in the kernel, {class: share of kernel samples}) of one perf file
    recorded with call chains; writes each class's 25 most frequent deciding frames to
    out_txt."""
    p = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,dso"],
                       capture_output=True, text=True)
    kernel = {c: 0 for c in CLASSES}
    deciding = {c: {} for c in CLASSES}
    user = 0
    user_leaf = {}
    for block in p.stdout.split("\n\n"):
        frames = []
        leaf_kernel = None
        leaf = None
        for line in block.splitlines():
            m = re.match(r"\s*[0-9a-f]+\s+(\S+)\s+\((.*)\)\s*$", line)
            if not m:
                continue
            sym, dso = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)), m.group(2)
            if leaf_kernel is None:
                leaf_kernel = "kernel" in dso
                leaf = sym
            if "kernel" in dso:
                frames.append(sym)
        if leaf_kernel is None:
            continue
        if not leaf_kernel:
            user += 1
            user_leaf[leaf] = user_leaf.get(leaf, 0) + 1
            continue
        c = sample_class(frames)
        kernel[c] += 1
        key = next((f for f in frames if not GENERIC.search(f)), "?")
        deciding[c][key] = deciding[c].get(key, 0) + 1
    total_k = sum(kernel.values())
    with open(out_txt, "w") as f:
        f.write(f"samples: user {user}, kernel {total_k}\n")
        for c in CLASSES:
            f.write(f"\n{c}: {kernel[c]}\n")
            for sym, n in sorted(deciding[c].items(), key=lambda kv: -kv[1])[:25]:
                f.write(f"  {n:7d} {sym}\n")
        f.write(f"\nuser, innermost frame: {user}\n")
        for sym, n in sorted(user_leaf.items(), key=lambda kv: -kv[1])[:40]:
            f.write(f"  {n:7d} {sym}\n")
    if total_k + user == 0:
        return 0.0, {c: 0.0 for c in CLASSES}
    return total_k / (total_k + user), {c: v / total_k for c, v in kernel.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=None)
    ap.add_argument("--pgbouncer-new", default=None)
    ap.add_argument("--modes", default="simple,extended")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--churn", action="store_true",
                    help="pgbench -C (a new connection per transaction): per connection")
    a = ap.parse_args()
    argv = ["bench.py", "--no-build", "--duration", str(a.duration), "--modes", a.modes,
            "--targets", "pgbouncer,pgsluice" + (",pgbouncer-new" if a.pgbouncer_new else "")]
    if a.binary:
        argv += ["--binary", a.binary]
    if a.pgbouncer_new:
        argv += ["--pgbouncer-new", a.pgbouncer_new]
    sys.argv = argv
    args = B.parse_args()
    if not shutil.which("perf"):
        raise SystemExit("perf not found (apt-get install linux-perf)")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = os.path.join(B.ROOT, "integration", "results", f"kernel-{stamp}")
    os.makedirs(out_dir)
    bench = B.Bench(args)
    targets = ["pgbouncer"] + (["pgbouncer-new"] if a.pgbouncer_new else []) + ["pgsluice"]
    rows = {}  # (mode, target) -> list of (user_us, sys_us, kshare, shares)
    try:
        bench.start_warm(targets)
        for r in range(a.rounds):
            for mode in args.modes:
                order = targets[r % len(targets):] + targets[:r % len(targets)]
                for t in order:
                    if mode == "prepared" and t == "pgbouncer":
                        continue
                    pid = bench.procs[t][1]
                    tag = f"r{r}-{mode}-{t}"
                    data = os.path.join(bench.work, f"{tag}.perf.data")
                    rec = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "2999", "-p", str(pid),
                                            "-o", data], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                    time.sleep(0.5)
                    res = bench.pgbench(t, mode, a.duration, tag, connect=a.churn)
                    rec.send_signal(2)
                    rec.wait(timeout=120)
                    kshare, shares = kernel_shares(data, os.path.join(out_dir, f"{tag}.txt"))
                    os.unlink(data)
                    rows.setdefault((mode, t), []).append(
                        (res.get("user_us"), res.get("sys_us"), kshare, shares))
                    B.log(f"{tag}: user {res.get('user_us'):.2f} sys {res.get('sys_us'):.2f} "
                          f"µs/txn, kernel samples {kshare:.0%}, "
                          + ", ".join(f"{c} {shares[c]:.0%}" for c in CLASSES))
    finally:
        bench.cleanup()
    lines = []
    cmd = "python3 " + " ".join([os.path.relpath(__file__, B.ROOT)] + sys.argv[1:])
    lines.append(f"Kernel share, {stamp}: `python3 integration/kernel_share.py "
                 f"{' '.join(argv[1:])}` (as run: {cmd}); pgbench -n -S -c {args.clients} "
                 f"-j {args.jobs}{' -C' if a.churn else ''} -T {a.duration}, {a.rounds} "
                 f"round(s), medians{'; per transaction = per connection' if a.churn else ''}.\n")
    lines.append("| mode | pooler | user µs/txn | system µs/txn | "
                 + " | ".join(f"{c} µs" for c in CLASSES) + " | total µs/txn |")
    lines.append("|---|---|--:|--:|" + "--:|" * len(CLASSES) + "--:|")
    med = {}
    for (mode, t), rs in rows.items():
        user = statistics.median(x[0] for x in rs)
        sys_ = statistics.median(x[1] for x in rs)
        shares = {c: statistics.median(x[3][c] for x in rs) for c in CLASSES}
        med[(mode, t)] = (user, sys_, shares)
        lines.append(f"| {mode} | {t} | {user:.2f} | {sys_:.2f} | "
                     + " | ".join(f"{sys_ * shares[c]:.2f}" for c in CLASSES)
                     + f" | {user + sys_:.2f} |")
    lines.append("")
    for mode in args.modes:
        s = med.get((mode, "pgsluice"))
        if not s:
            continue
        user, sys_, shares = s
        floor = user + sys_ * (1 - shares["entry"] - shares["epoll"])
        for t in targets[:-1]:
            p = med.get((mode, t))
            if not p:
                continue
            goal = 0.8 * (p[0] + p[1])
            lines.append(f"{mode}: pgsluice's floor without `entry` and `epoll` "
                         f"{floor:.2f} µs/txn (user {user:.2f} + kernel "
                         f"{sys_ * (1 - shares['entry'] - shares['epoll']):.2f}) against "
                         f"0.8 × {t}'s {p[0] + p[1]:.2f} = {goal:.2f}: "
                         f"{'below' if floor <= goal else 'above'} ({floor / goal:.2f}×)")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
