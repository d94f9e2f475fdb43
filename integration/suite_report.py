"""Tables and the plot of bench_suite.py, from its runs.json data (targets: suite_targets.py).

Medians and pairing: see suite_common.py.
"""

import os

import suite_targets
from bench import (PGBOUNCERS, TARGET_NAMES, fmt, md_cell, name_pgbouncers,
                   pgbouncer_prepared_support, top_errors)
from suite_common import clean, diff, med, ms_to_us, paired, ratio, refs, select, x

COLORS = {"direct": "tab:gray", "pgbouncer": "tab:blue", "pgbouncer-new": "tab:green",
          "pgsluice": "tab:orange"}


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


# ------------------------------------------------------------------ sections


def sweep_table(data):
    runs, pgbs = data["sweep"], refs(data)

    def cols(what):
        return "".join(f"{what} ×{TARGET_NAMES[p]} | " for p in pgbs)

    lines = ["## Scale sweep", "",
             f"`pgbench -n -S -M MODE -c CLIENTS -j 2`, transaction mode, pool size "
             f"{data['pool_size']}. Seconds of transactions per run, by client count: "
             + ", ".join(f"{c}: {d}" for c, d in data["duration_at"].items())
             + " (pgbench -T adds the time connecting took in the previous round; TPS is "
             "pgbench's, without the initial connection time).", "",
             "| clients | mode | target | TPS | " + cols("TPS") + "TPS ×direct | p50 ms "
             "| p99 ms | " + cols("p99") + "pooler CPU µs/txn | " + cols("CPU") + "errors |",
             "|--:|---|---|--:|" + "--:|" * (3 + 3 * len(pgbs)) + "--:|---|"]
    for c in data["clients_list"]:
        for mode in data["modes"]:
            for t in data["targets"]:
                rs = select(runs, target=t, mode=mode, clients=c)
                if not rs:
                    if t == "direct" and c > data["direct_max_clients"]:
                        lines.append(f"| {c} | {mode} | direct | skipped: more than "
                                     f"--direct-max-clients {data['direct_max_clients']} "
                                     + "|" * (8 + 3 * len(pgbs)) + " |")
                    continue
                ok = [r for r in rs if clean(r)] or rs
                m = dict(mode=mode, clients=c)
                errs = errors_cell(rs)
                if t in PGBOUNCERS and mode == "prepared" and errs != "none":
                    errs = (pgbouncer_prepared_support(data.get("pgbouncer_versions", {}).get(
                        t, data["pgbouncer_version"])) + "; " + errs)

                def vs(key, skip=False):
                    # A PgBouncer is its own reference only where it ran clean.
                    return ["n/a" if skip else "×1.00" if t == p and any(clean(r) for r in rs)
                            else x(med(paired(runs, t, p, key, ratio, **m))) for p in pgbs]
                lines.append("| " + " | ".join(
                    [str(c), mode, TARGET_NAMES[t], fmt(med(r["tps"] for r in ok), 0)]
                    + vs("tps")
                    + ["n/a" if t == "direct" else x(med(paired(runs, t, "direct", "tps", ratio,
                                                                **m))),
                       fmt(med(r["p50"] for r in ok), 3), fmt(med(r["p99"] for r in ok), 3)]
                    + vs("p99")
                    + ["n/a" if t == "direct" else fmt(med(r.get("cpu_us") for r in ok), 1)]
                    + vs("cpu_us", skip=t == "direct") + [errs]) + " |")
    lines += ["", "Medians over rounds; ratios are medians of per-round ratios over the rounds "
              "in which both runs were clean (n/a when there was none: PgBouncer 1.18 in "
              "prepared mode). Each ×PgBouncer column is against that PgBouncer's run. When clients aborted, TPS and latencies are those of the "
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
    runs, pgbs = data["churn"], refs(data)
    if not runs:
        return []
    lines = ["## Churn: a new connection per transaction", "",
             f"`pgbench -n -S -M simple -C -c {data['churn_clients']} -T "
             f"{data['churn_duration']}`: TPS = connections per second. Through a pooler each "
             "includes md5 auth; direct, a new backend each time, with no password (the "
             "cluster trusts postgres on 127.0.0.1).", "",
             "| target | connections/s | "
             + "".join(f"×{TARGET_NAMES[p]} | " for p in pgbs)
             + "×direct | avg connect ms | p99 ms | pooler CPU µs/connection | "
             + "".join(f"CPU ×{TARGET_NAMES[p]} | " for p in pgbs) + "errors |",
             "|---|--:|" + "--:|" * (4 + 2 * len(pgbs)) + "---|"]
    for t in data["targets"]:
        rs = select(runs, target=t)
        if not rs:
            continue
        ok = [r for r in rs if clean(r)] or rs
        lines.append("| " + " | ".join(
            [TARGET_NAMES[t], fmt(med(r["tps"] for r in ok), 0)]
            + ["×1.00" if t == p else x(med(paired(runs, t, p, "tps", ratio))) for p in pgbs]
            + ["n/a" if t == "direct" else x(med(paired(runs, t, "direct", "tps", ratio))),
               fmt(med(r.get("conn_ms") for r in ok), 3), fmt(med(r["p99"] for r in ok), 3),
               "n/a" if t == "direct" else fmt(med(r.get("cpu_us") for r in ok), 1)]
            + ["n/a" if t == "direct" else "×1.00" if t == p else
               x(med(paired(runs, t, p, "cpu_us", ratio))) for p in pgbs]
            + [errors_cell(rs)]) + " |")
    return lines + [""]


def mib(v):
    return "n/a" if v is None else f"{v / 1024:.1f}"


def idle_table(data):
    if not data["idle"]:
        return []
    lines = ["## Idle connections: memory", "",
             f"{data['idle_clients']:,} clients log in (md5) to a fresh pooler process"
             + (", run one query (`SELECT 1`)" if data["idle"][0].get("query") else "")
             + " and stay idle; readings once VmRSS is stable (moved ≤ 64 KiB over 2 s). KiB/client = "
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
            fmt(suite_targets.kib_per_client(r, "rss_kib"), 2),
            mib(r["empty"]["pss_kib"]), mib(r["with_clients"]["pss_kib"]),
            fmt(suite_targets.kib_per_client(r, "pss_kib"), 2), mib(r["after"]["rss_kib"]),
            fmt(r.get("seconds"), 1), str(r.get("fd_limit"))]) + " |")
        for msg, k in (r.get("errors") or {}).items():
            lines.append(f"| | login error ×{k}: {md_cell(msg)} |||||||||||")
    return lines + [""]


def age_table(data):
    if not data.get("age"):
        return []
    lines = ["## Idle for longer: does an idle client cost more with time?", "",
             f"{data['age_clients']:,} clients per pooler log in (md5), run `SELECT 1` and stay "
             "idle, every pooler's at once. RSS right after they went idle (once stable), then "
             f"after about {data['age_wait']} s of silence; the pooler's CPU time in between. "
             "Per hour: the growth over the wait, scaled linearly to 3,600 s (an "
             "extrapolation: growth that starts later than the wait is not seen).", "",
             "| target | idle clients | open at 2nd reading | RSS right after MiB "
             "| RSS after wait MiB | seconds between | growth KiB | growth KiB/client/hour "
             "| Pss growth KiB | pooler CPU s while idle |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in data["age"]:
        g = suite_targets.age_growth(r)
        lines.append("| " + " | ".join([
            TARGET_NAMES[r["target"]], f"{r.get('connected', 0):,}",
            f"{r.get('at_reading', {}).get('open', 0):,}", mib(r["young"]["rss_kib"]),
            mib(r["old"]["rss_kib"]), fmt(r["idle_s"], 0), str(g["rss_kib"]),
            fmt(g["per_client_hour"], 4),
            "n/a" if g["pss_kib"] is None else str(g["pss_kib"]),
            fmt(r["cpu_idle_s"], 2)]) + " |")
    return lines + [""]


def load_line(data):
    """How busy the shared machine was: the 1-minute load average over the run."""
    load = [s[1] for s in data.get("load", [])]
    if not load:
        return []
    load.sort()
    return [f"Machine load (1-minute load average, sampled every 15 s, {len(load)} samples): "
            f"min {load[0]:.2f}, median {med(load):.2f}, max {load[-1]:.2f}.", ""]


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
             "| p99 ms | CPU µs/txn | failed | aborted | exit | load | raw output |",
             "|---|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in data["sweep"] + data["churn"]:
        mode = r["mode"] + (" -C" if r["section"] == "churn" else "")
        lines.append(f"| {r['section']} | {r['round']} | {r['clients']} | {mode} | "
                     f"{TARGET_NAMES[r['target']]} | {r.get('T')} | "
                     f"{fmt(r.get('conn_init_ms') and r['conn_init_ms'] / 1e3, 1)} | "
                     f"{fmt(r['tps'], 0)} | {fmt(r['p50'], 3)} | "
                     f"{fmt(r['p99'], 3)} | {fmt(r.get('cpu_us'), 1)} | {fmt(r['failed'])} | "
                     f"{r['aborted']} | {r['status']} | {fmt(r.get('load1'), 1)} | "
                     f"`{r.get('file')}` |")
    return lines + ["", "</details>", ""]


def render(data, results_dir):
    """The Markdown report; writes scale.png beside it. Returns (markdown, note or None)."""
    name_pgbouncers(data.get("pgbouncer_versions"))
    note = plot(data, os.path.join(results_dir, "scale.png")) if data["sweep"] else None
    lines = [data["header"], ""]
    if data.get("minutes") is not None:
        lines += [f"Run time {data['minutes']} min.", ""]
    lines += load_line(data)
    lines += suite_targets.targets_table(data)
    if data["sweep"]:
        lines += sweep_table(data)
        if note is None:
            lines += ["![TPS and p99 latency against clients](scale.png)", ""]
        else:
            lines += [f"({note}.)", ""]
        lines += latency_table(data)
    lines += churn_table(data) + idle_table(data) + age_table(data)
    for t, why in data.get("dead", {}).items():
        lines += [f"**{TARGET_NAMES[t]}: {md_cell(why)}**", ""]
    for n in data.get("notes", []):
        lines += [n, ""]
    lines += every_run_table(data)
    return "\n".join(lines), note
