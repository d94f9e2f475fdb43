"""The targets table of bench_suite.py: issue 14's goals against each PgBouncer of the run.

One row per goal; for each PgBouncer, its measured value (or pgsluice's ratio to it) and
whether pgsluice meets the goal against it. The comparisons are strict, with no noise
margin: on the shared 2-core machine runs move by ±15 %, so a verdict near its limit is
not conclusive on its own.
"""

from bench import TARGET_NAMES, fmt, md_cell, version_tuple
from suite_common import clean, diff, med, ms_to_us, paired, ratio, refs, select, x

CPU_LIMIT = 0.8  # pgsluice CPU per transaction, at most this times PgBouncer's
TPS_CLIENTS = (50, 500, 2000)
AGE_NOISE_KIB = 64  # the readings' own stability tolerance (suite_idle.stable_memory)


def kib_per_client(r, key):
    if not r.get("connected"):
        return None
    return (r["with_clients"][key] - r["empty"][key]) / r["connected"] \
        if r["with_clients"].get(key) is not None and r["empty"].get(key) is not None else None


def age_growth(r):
    """RSS and Pss growth (KiB) between the age section's two readings, and RSS growth per
    client per hour, extrapolated linearly from the wait."""
    rss = r["old"]["rss_kib"] - r["young"]["rss_kib"]
    pss = None
    if r["old"].get("pss_kib") is not None and r["young"].get("pss_kib") is not None:
        pss = r["old"]["pss_kib"] - r["young"]["pss_kib"]
    per = None
    if r.get("connected") and r.get("idle_s"):
        per = rss / r["connected"] * 3600.0 / r["idle_s"]
    return {"rss_kib": rss, "pss_kib": pss, "per_client_hour": per}


def verdict(ok):
    return "n/a" if ok is None else "yes" if ok else "**no**"


def cpu_value(runs, target, mode):
    return med(r.get("cpu_us") for r in select(runs, target=target, mode=mode, clients=50)
               if clean(r))


def no_prepared(data, target, mode):
    """A PgBouncer before 1.21 in prepared mode: its clients abort (no prepared statements in
    transaction mode), so a round that happened to finish is no reference."""
    version = data.get("pgbouncer_versions", {}).get(target)
    return mode == "prepared" and (version_tuple(version) or (99, 0)) < (1, 21)


UNSUPPORTED = ("unsupported: its clients abort", None)


def rows(data):
    """(measure, goal, pgsluice's value, [(value vs PgBouncer p, met) for each p])."""
    sweep, pgbs, out = data["sweep"], refs(data), []
    modes = data["modes"]
    if 50 in data["clients_list"]:
        for mode in modes:
            own = cpu_value(sweep, "pgsluice", mode)
            cells = []
            for p in pgbs:
                if no_prepared(data, p, mode):
                    cells.append(UNSUPPORTED)
                    continue
                c = med(paired(sweep, "pgsluice", p, "cpu_us", ratio, mode=mode, clients=50))
                theirs = cpu_value(sweep, p, mode)
                cells.append((f"{fmt(theirs, 1)} µs: {x(c)}" if theirs is not None
                              else "n/a (no clean run)", None if c is None else c <= CPU_LIMIT))
            out.append((f"pooler CPU per txn, 50 clients, {mode}", f"≤ {CPU_LIMIT}×",
                        f"{fmt(own, 1)} µs", cells))
    for c in TPS_CLIENTS:
        if c not in data["clients_list"]:
            continue
        for mode in modes:
            own = med(r["tps"] for r in select(sweep, target="pgsluice", mode=mode, clients=c)
                      if clean(r))
            cells = []
            for p in pgbs:
                if no_prepared(data, p, mode):
                    cells.append(UNSUPPORTED)
                    continue
                t = med(paired(sweep, "pgsluice", p, "tps", ratio, mode=mode, clients=c))
                theirs = med(r["tps"] for r in select(sweep, target=p, mode=mode, clients=c)
                             if clean(r))
                cells.append((f"{fmt(theirs, 0)}: {x(t)}" if theirs is not None
                              else "n/a (no clean run)", None if t is None else t >= 1.0))
            out.append((f"TPS, {c:,} clients, {mode}", "≥ 1×", fmt(own, 0), cells))
    if 1 in data["clients_list"]:
        for mode in ("simple", "extended"):
            if mode not in modes:
                continue
            for k in ("p50", "p99"):
                def added(t):
                    return ms_to_us(med(paired(sweep, t, "direct", k, diff, mode=mode,
                                               clients=1)))
                own = added("pgsluice")
                cells = []
                for p in pgbs:
                    theirs = added(p)
                    cells.append((f"{fmt(theirs, 0)} µs", None if own is None or theirs is None
                                  else own <= theirs))
                out.append((f"added {k} latency over direct, 1 client, {mode}", "≤ PgBouncer's",
                            f"{fmt(own, 0)} µs", cells))
    idle = {r["target"]: kib_per_client(r, "rss_kib") for r in data["idle"]}
    if "pgsluice" in idle:
        own = idle["pgsluice"]
        cells = [(f"{fmt(idle.get(p), 2)} KiB", None if own is None or idle.get(p) is None
                  else own <= idle[p]) for p in pgbs]
        out.append((f"RSS per idle client, {data['idle_clients']:,} clients, after one query",
                    "≤ PgBouncer's", f"{fmt(own, 2)} KiB", cells))
    if data["churn"]:
        own = med(r["tps"] for r in select(data["churn"], target="pgsluice") if clean(r))
        cells = []
        for p in pgbs:
            t = med(paired(data["churn"], "pgsluice", p, "tps", ratio))
            cells.append((x(t), None if t is None else t >= 1.0))
        out.append(("connections/s, `pgbench -C`", "≥ 1×", f"{fmt(own, 0)}/s", cells))
    age = {r["target"]: age_growth(r) for r in data.get("age", [])}
    ages = {r["target"]: r for r in data.get("age", [])}
    if "pgsluice" in age:
        g = age["pgsluice"]
        ok = g["rss_kib"] <= AGE_NOISE_KIB
        cells = [(f"{age[p]['rss_kib']} KiB in {fmt(ages[p]['idle_s'], 0)} s" if p in age
                  else "n/a", ok) for p in pgbs]
        out.append((f"{data['age_clients']:,} clients idle {fmt(ages['pgsluice']['idle_s'], 0)}"
                    f" s longer", f"RSS growth ≤ {AGE_NOISE_KIB} KiB (no growth)",
                    f"{g['rss_kib']} KiB ({fmt(g['per_client_hour'], 4)} KiB/client/hour); "
                    f"CPU {fmt(ages['pgsluice']['cpu_idle_s'], 2)} s", cells))
    return out


def targets_table(data):
    pgbs = refs(data)
    lines = ["## Targets (issue 14)", "",
             "pgsluice against each goal, against each PgBouncer of the run (its value, or "
             "pgsluice's ratio to it, then whether the goal is met against it). Medians of "
             "the rounds; a ratio is the median of per-round ratios. No noise margin.", "",
             "| measure | goal | pgsluice | "
             + "".join(f"{TARGET_NAMES[p]} | met vs {TARGET_NAMES[p]} | " for p in pgbs),
             "|---|---|--:|" + "--:|---|" * len(pgbs)]
    for measure, goal, own, cells in rows(data):
        lines.append(f"| {md_cell(measure)} | {md_cell(goal)} | {md_cell(own)} | "
                     + "".join(f"{md_cell(v)} | {verdict(ok)} | " for v, ok in cells))
    if data["rounds"] < 3:
        lines += ["", f"Only {data['rounds']} round(s): single measurements, not medians of "
                  "3; not evidence either way."]
    return lines + [""]
