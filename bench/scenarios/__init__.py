"""The scenarios of issue 6, in table order; each ``run(ctx)`` returns its figures and targets."""

from __future__ import annotations

from bench.scenarios import balance, biggrid, bringup, lifecycle, output, report, subprocess_trials, throughput

SCENARIOS = {
    "throughput": throughput,
    "subprocess": subprocess_trials,
    "balance": balance,
    "bringup": bringup,
    "biggrid": biggrid,
    "output": output,
    "lifecycle": lifecycle,
    "report": report,  # issue 15
}
