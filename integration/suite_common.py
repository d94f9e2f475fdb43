"""Run selection, pairing and number helpers shared by suite_report.py and suite_targets.py.

Every number is a median over rounds; every ratio or difference is the median of per-round
values, each pairing two targets' runs of the same round, client count and mode. A run
counts as clean when pgbench exited 0 with no failed transaction and no aborted client;
ratios and differences use clean runs only.
"""

import statistics

from bench import PGBOUNCERS


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


def ms_to_us(v):
    return None if v is None else v * 1000.0


def refs(data):
    """The PgBouncer targets of the run: the references of every ratio."""
    return [t for t in PGBOUNCERS if t in data["targets"]]
