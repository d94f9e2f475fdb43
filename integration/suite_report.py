"""Tables, the issue-6 targets check and the plot of bench_suite.py, from its runs.json data.

Every number is a median over rounds; every ratio or difference is the median of per-round
values, each pairing two targets' runs of the same round, client count and mode. A run
counts as clean when pgbench exited 0 with no failed transaction and no aborted client;
ratios and differences use clean runs only.
"""

import os
import statistics

from bench import TARGET_NAMES, fmt, md_cell, pgbouncer_prepared_support, top_errors

COLORS = {"direct": "tab:gray", "pgbouncer": "tab:blue", "pgsluice": "tab:orange"}
CPU_LIMIT = 0.8  # pgsluice CPU per transaction, at most this times PgBouncer's
KIB_PER_CLIENT_LIMIT = 10.0


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def clean(r):
    return r["status"] == 0 and not r["aborted"] and not r["failed"] and r["tps"] is not None


def select(runs, **match):
    return [r for r in runs if all(r.get(k) == v for k, v in match.items())]


def paired(runs, target, ref, key, op, **match):
    """op(target's value, ref's value) for every round where both ran clean."""
    out = []
    for r in select(runs, target=target, **match):
        o = select(runs, target=ref, round=r["round"], **match)
        if o and clean(r) and clean(o[0]) and r.get(key) is not None \
                and o[0].get(key) is not None:
            out.append(op(r[key], o[0][key]))
    return out


def ratio(a, b):
    return a / b if b else None


def diff(a, b):
    return a - b


def x(v):
    return "n/a" if v is None else f"×{v:.2f}"


def errors_cell(runs):
    failed = sum(r["failed"] or 0 for r in runs)
    aborted = sum(r["aborted"] for r in runs)
    bad = sum(1 for r in runs if r["status"] != 0)
    parts = []
    if failed:
        parts.append(f"{failed} failed txns")
    if aborted:
        parts.append(f"{aborted} clients aborted")
    if bad:
        parts.append(f"{bad}/{len(runs)} runs exit≠0")
    errs = top_errors(runs)
    if errs:
        parts.append(errs)
    return md_cell("; ".join(parts)) if parts else "none"


def ms_to_us(v):
    return None if v is None else v * 1000.0


# ------------------------------------------------------------------ sections


def sweep_table(data):
    runs = data["sweep"]
    lines = ["## Scale sweep", "",
             f"`pgbench -n -S -M MODE -c CLIENTS -j 2`, transaction mode, pool size "
             f"{data['pool_size']}. Seconds of transactions per run, by client count: "
             + ", ".join(f"{c}: {d}" for c, d in data["duration_at"].items())
             + " (pgbench -T adds the time connecting took in the previous round; TPS is "
             "pgbench's, without the initial connection time).", "",
             "| clients | mode | target | TPS | TPS ×PgBouncer | TPS ×direct | p50 ms | p99 ms "
             "| p99 ×PgBouncer | pooler CPU µs/txn | CPU ×PgBouncer | errors |",
             "|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for c in data["clients_list"]:
        for mode in data["modes"]:
            for t in data["targets"]:
                rs = select(runs, target=t, mode=mode, clients=c)
                if not rs:
                    if t == "direct" and c > data["direct_max_clients"]:
                        lines.append(f"| {c} | {mode} | direct | skipped: more than "
                                     f"--direct-max-clients {data['direct_max_clients']} "
                                     f"||||||||| |")
                    continue
                ok = [r for r in rs if clean(r)] or rs
                m = dict(mode=mode, clients=c)
                # PgBouncer is the reference only where it ran clean.
                is_ref = t == "pgbouncer" and any(clean(r) for r in rs)
                errs = errors_cell(rs)
                if t == "pgbouncer" and mode == "prepared" and errs != "none":
                    errs = pgbouncer_prepared_support(data["pgbouncer_version"]) + "; " + errs
                lines.append("| " + " | ".join([
                    str(c), mode, TARGET_NAMES[t],
                    fmt(med(r["tps"] for r in ok), 0),
                    "×1.00" if is_ref else x(med(paired(runs, t, "pgbouncer", "tps", ratio, **m))),
                    "n/a" if t == "direct" else x(med(paired(runs, t, "direct", "tps", ratio,
                                                             **m))),
                    fmt(med(r["p50"] for r in ok), 3),
                    fmt(med(r["p99"] for r in ok), 3),
                    "×1.00" if is_ref else x(med(paired(runs, t, "pgbouncer", "p99", ratio, **m))),
                    "n/a" if t == "direct" else fmt(med(r.get("cpu_us") for r in ok), 1),
                    "n/a" if t == "direct" else "×1.00" if is_ref else
                    x(med(paired(runs, t, "pgbouncer", "cpu_us", ratio, **m))),
                    errs]) + " |")
    lines += ["", "Medians over rounds; ratios are medians of per-round ratios over the rounds "
              "in which both runs were clean (n/a when there was none: PgBouncer 1.18 in "
              "prepared mode). When clients aborted, TPS and latencies are those of the "
              "clients that did not. The plot: `scale.png`.", ""]
    short = [r for r in runs if r.get("window_s") is not None
             and r["window_s"] < data["duration_at"][str(r["clients"])] / 2]
    if short:
        lines += ["Connecting took longer than allowed for, leaving less than half the wanted "
                  "time for transactions, in: " + ", ".join(
                      f"`{r['file']}` ({r['window_s']} s)" for r in short) + ".", ""]
    return lines


def latency_table(data):
    runs = data["sweep"]
    if 1 not in data["clients_list"]:
        return ["## 1-client latency", "", "Not measured: --clients-list has no 1.", ""]
    lines = ["## 1-client latency: added over direct", "",
             "`pgbench -c 1 -j 1` runs of the sweep. Added = pooler's p50 (p99) minus direct's "
             "p50 (p99) in the same round and mode, median over rounds.", "",
             "| mode | target | p50 µs | p99 µs | added p50 µs | added p99 µs | errors |",
             "|---|---|--:|--:|--:|--:|---|"]
    for mode in data["modes"]:
        for t in data["targets"]:
            rs = select(runs, target=t, mode=mode, clients=1)
            if not rs:
                continue
            ok = [r for r in rs if clean(r)] or rs
            m = dict(mode=mode, clients=1)
            added = ["n/a", "n/a"] if t == "direct" else [
                fmt(ms_to_us(med(paired(runs, t, "direct", k, diff, **m))), 0)
                for k in ("p50", "p99")]
            lines.append("| " + " | ".join([
                mode, TARGET_NAMES[t], fmt(ms_to_us(med(r["p50"] for r in ok)), 0),
                fmt(ms_to_us(med(r["p99"] for r in ok)), 0)] + added
                + [errors_cell(rs)]) + " |")
    return lines + [""]


def churn_table(data):
    runs = data["churn"]
    if not runs:
        return []
    lines = ["## Churn: a new connection per transaction", "",
             f"`pgbench -n -S -M simple -C -c {data['churn_clients']} -T "
             f"{data['churn_duration']}`: TPS = connections per second. Through a pooler each "
             "includes md5 auth; direct, a new backend each time, with no password (the "
             "cluster trusts postgres on 127.0.0.1).", "",
             "| target | connections/s | ×PgBouncer | ×direct | avg connect ms | p99 ms "
             "| pooler CPU µs/connection | CPU ×PgBouncer | errors |",
             "|---|--:|--:|--:|--:|--:|--:|--:|---|"]
    for t in data["targets"]:
        rs = select(runs, target=t)
        if not rs:
            continue
        ok = [r for r in rs if clean(r)] or rs
        lines.append("| " + " | ".join([
            TARGET_NAMES[t], fmt(med(r["tps"] for r in ok), 0),
            "×1.00" if t == "pgbouncer" else x(med(paired(runs, t, "pgbouncer", "tps", ratio))),
            "n/a" if t == "direct" else x(med(paired(runs, t, "direct", "tps", ratio))),
            fmt(med(r.get("conn_ms") for r in ok), 3), fmt(med(r["p99"] for r in ok), 3),
            "n/a" if t == "direct" else fmt(med(r.get("cpu_us") for r in ok), 1),
            "n/a" if t == "direct" else "×1.00" if t == "pgbouncer" else
            x(med(paired(runs, t, "pgbouncer", "cpu_us", ratio))),
            errors_cell(rs)]) + " |")
    return lines + [""]


def kib_per_client(r, key):
    if not r.get("connected"):
        return None
    return (r["with_clients"][key] - r["empty"][key]) / r["connected"] \
        if r["with_clients"].get(key) is not None and r["empty"].get(key) is not None else None


def mib(v):
    return "n/a" if v is None else f"{v / 1024:.1f}"


def idle_table(data):
    if not data["idle"]:
        return []
    lines = ["## Idle connections: memory", "",
             f"{data['idle_clients']:,} clients log in (md5) to a fresh pooler process and stay "
             "idle; readings once VmRSS is stable (moved ≤ 64 KiB over 2 s). KiB/client = "
             "(with clients − empty) / clients connected.", "",
             "| target | connected | open at reading | RSS empty MiB | RSS with clients MiB "
             "| KiB/client (RSS) | Pss empty MiB | Pss with clients MiB | KiB/client (Pss) "
             "| RSS after they left MiB | login time s | fd limit |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in data["idle"]:
        failed = f" ({r['failed']} failed)" if r.get("failed") else ""
        unstable = " (not stable after 30 s)" if r["with_clients"].get("unstable") else ""
        lines.append("| " + " | ".join([
            TARGET_NAMES[r["target"]], f"{r.get('connected', 0):,}{failed}",
            f"{r.get('at_reading', {}).get('open', 0):,}",
            mib(r["empty"]["rss_kib"]), mib(r["with_clients"]["rss_kib"]) + unstable,
            fmt(kib_per_client(r, "rss_kib"), 2),
            mib(r["empty"]["pss_kib"]), mib(r["with_clients"]["pss_kib"]),
            fmt(kib_per_client(r, "pss_kib"), 2), mib(r["after"]["rss_kib"]),
            fmt(r.get("seconds"), 1), str(r.get("fd_limit"))]) + " |")
        for msg, k in (r.get("errors") or {}).items():
            lines.append(f"| | login error ×{k}: {md_cell(msg)} |||||||||||")
    return lines + [""]


# ------------------------------------------------------------------ targets


def verdict(ok):
    return "n/a" if ok is None else "yes" if ok else "**no**"


def target_rows(data):
    """(goal, measured, met) for each row of issue 6's targets table."""
    sweep, rows = data["sweep"], []
    m50 = dict(clients=50)
    for mode in ("simple", "extended"):
        if 50 not in data["clients_list"] or mode not in data["modes"]:
            continue
        c = med(paired(sweep, "pgsluice", "pgbouncer", "cpu_us", ratio, mode=mode, **m50))
        cpu = [med(r.get("cpu_us") for r in select(sweep, target=t, mode=mode, **m50)
                   if clean(r)) for t in ("pgsluice", "pgbouncer")]
        rows.append((f"pooler CPU per txn, 50 clients, {mode}: ≤ {CPU_LIMIT}× PgBouncer's",
                     f"{fmt(cpu[0], 1)} vs {fmt(cpu[1], 1)} µs: {x(c)}",
                     None if c is None else c <= CPU_LIMIT))
    for mode in ("simple", "extended"):
        if 50 not in data["clients_list"] or mode not in data["modes"]:
            continue
        t = med(paired(sweep, "pgsluice", "pgbouncer", "tps", ratio, mode=mode, **m50))
        rows.append((f"TPS, 50 clients, {mode}: ≥ PgBouncer's", x(t),
                     None if t is None else t >= 1.0))
    for mode in ("simple", "extended"):
        if 1 not in data["clients_list"] or mode not in data["modes"]:
            continue
        for k in ("p50", "p99"):
            added = [ms_to_us(med(paired(sweep, t, "direct", k, diff, mode=mode, clients=1)))
                     for t in ("pgsluice", "pgbouncer")]
            ok = None if None in added else added[0] <= added[1]
            rows.append((f"added {k} latency over direct, 1 client, {mode}: ≤ PgBouncer's",
                         f"{fmt(added[0], 0)} vs {fmt(added[1], 0)} µs", ok))
    big = max(data["clients_list"])
    if big >= 2000:
        for mode in data["modes"]:
            rs = select(sweep, target="pgsluice", mode=mode, clients=big)
            if not rs:
                continue
            errs = errors_cell(rs)
            m = dict(mode=mode, clients=big)
            rows.append((f"{big:,} clients on a pool of {data['pool_size']}, {mode}: no errors",
                         f"errors: {errs}; TPS {fmt(med(r['tps'] for r in rs), 0)} "
                         f"({x(med(paired(sweep, 'pgsluice', 'pgbouncer', 'tps', ratio, **m)))}"
                         f" PgBouncer), p99 {fmt(med(r['p99'] for r in rs), 1)} ms "
                         f"({x(med(paired(sweep, 'pgsluice', 'pgbouncer', 'p99', ratio, **m)))}"
                         f" PgBouncer)", errs == "none"))
    idle = {r["target"]: kib_per_client(r, "rss_kib") for r in data["idle"]}
    if "pgsluice" in idle:
        own, theirs = idle["pgsluice"], idle.get("pgbouncer")
        ok = None if own is None or theirs is None else (
            own <= KIB_PER_CLIENT_LIMIT and own <= theirs)
        rows.append((f"memory per idle client ({data['idle_clients']:,} clients, RSS): "
                     f"≤ {KIB_PER_CLIENT_LIMIT:g} KiB and ≤ PgBouncer's",
                     f"{fmt(own, 2)} vs {fmt(theirs, 2)} KiB", ok))
    if data["churn"]:
        t = med(paired(data["churn"], "pgsluice", "pgbouncer", "tps", ratio))
        rows.append(("connections/s with pgbench -C: ≥ PgBouncer's", x(t),
                     None if t is None else t >= 1.0))
    return rows


def targets_table(data):
    lines = ["## Targets (issue 6)", "",
             "pgsluice against each goal, computed from the tables below (pgsluice vs "
             "PgBouncer).", "", "| goal | measured | met |", "|---|---|---|"]
    for goal, measured, ok in target_rows(data):
        lines.append(f"| {goal} | {md_cell(measured)} | {verdict(ok)} |")
    if data["rounds"] < 3:
        lines += ["", f"Only {data['rounds']} round(s): single measurements, not medians of "
                  "3; not evidence either way."]
    return lines + [""]


# ------------------------------------------------------------------ plot and report


def plot(data, path):
    """TPS and p99 against clients, one column per mode; returns a note when skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no plot"
    runs, modes = data["sweep"], data["modes"]
    if not runs:
        return "no sweep runs: no plot"
    fig, axes = plt.subplots(2, len(modes), figsize=(4.2 * len(modes), 7.5), squeeze=False)
    for col, mode in enumerate(modes):
        for t in data["targets"]:
            pts = []
            for c in data["clients_list"]:
                rs = select(runs, target=t, mode=mode, clients=c)
                if rs:
                    ok = [r for r in rs if clean(r)] or rs
                    pts.append((c, med(r["tps"] for r in ok), med(r["p99"] for r in ok),
                                all(clean(r) for r in rs)))
            if not pts:
                continue
            # A point with errors (aborted clients: PgBouncer 1.18 in prepared mode) is a
            # lone × off the line: its TPS and p99 are those of the clients that survived.
            good = [p for p in pts if p[3]]
            bad = [p for p in pts if not p[3]]
            for row, k in ((0, 1), (1, 2)):
                ax = axes[row][col]
                if good:
                    ax.plot([p[0] for p in good], [p[k] for p in good], color=COLORS[t],
                            marker="o", label=TARGET_NAMES[t])
                if bad:
                    ax.plot([p[0] for p in bad], [p[k] for p in bad], color=COLORS[t],
                            marker="x", markersize=10, linestyle="none",
                            label=f"{TARGET_NAMES[t]}: runs with errors")
        axes[0][col].set_title(f"pgbench -S, {mode}")
        axes[0][col].set_ylabel("TPS")
        axes[0][col].set_ylim(bottom=0)
        axes[1][col].set_ylabel("p99 latency, ms")
        axes[1][col].set_yscale("log")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log")
            ax.set_xlabel("clients")
            ax.set_xticks(data["clients_list"], [str(c) for c in data["clients_list"]])
            ax.grid(True, alpha=0.3)
    legend = {}  # one legend for the figure: label -> handle, first seen
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend),
               fontsize=9, frameon=False)
    fig.suptitle(f"pool size {data['pool_size']}, transaction mode; medians of "
                 f"{data['rounds']} round(s)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def every_run_table(data):
    lines = ["<details><summary>every run</summary>", "",
             "| section | round | clients | mode | target | -T s | connecting s | TPS | p50 ms "
             "| p99 ms | CPU µs/txn | failed | aborted | exit | raw output |",
             "|---|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in data["sweep"] + data["churn"]:
        mode = r["mode"] + (" -C" if r["section"] == "churn" else "")
        lines.append(f"| {r['section']} | {r['round']} | {r['clients']} | {mode} | "
                     f"{TARGET_NAMES[r['target']]} | {r.get('T')} | "
                     f"{fmt(r.get('conn_init_ms') and r['conn_init_ms'] / 1e3, 1)} | "
                     f"{fmt(r['tps'], 0)} | {fmt(r['p50'], 3)} | "
                     f"{fmt(r['p99'], 3)} | {fmt(r.get('cpu_us'), 1)} | {fmt(r['failed'])} | "
                     f"{r['aborted']} | {r['status']} | `{r.get('file')}` |")
    return lines + ["", "</details>", ""]


def render(data, results_dir):
    """The Markdown report; writes scale.png beside it. Returns (markdown, note or None)."""
    note = plot(data, os.path.join(results_dir, "scale.png")) if data["sweep"] else None
    lines = [data["header"], ""]
    if data.get("minutes") is not None:
        lines += [f"Run time {data['minutes']} min.", ""]
    lines += targets_table(data)
    if data["sweep"]:
        lines += sweep_table(data)
        if note is None:
            lines += ["![TPS and p99 latency against clients](scale.png)", ""]
        else:
            lines += [f"({note}.)", ""]
        lines += latency_table(data)
    lines += churn_table(data) + idle_table(data)
    for t, why in data.get("dead", {}).items():
        lines += [f"**{TARGET_NAMES[t]}: {md_cell(why)}**", ""]
    for n in data.get("notes", []):
        lines += [n, ""]
    lines += every_run_table(data)
    return "\n".join(lines), note
