"""The scenarios of issue 6, in table order; each ``run(ctx)`` returns its figures and targets."""

from __future__ import annotations

from bench.scenarios import balance, biggrid, bringup, output, search, subprocess_trials, throughput

SCENARIOS = {
    "throughput": throughput,
    "subprocess": subprocess_trials,
    "balance": balance,
    "bringup": bringup,
    "biggrid": biggrid,
    "output": output,
    "search": search,
}
