"""The bench's scenarios, in table order; each ``run(ctx)`` returns its figures and targets."""

from __future__ import annotations

from bench.scenarios import (
    balance,
    biggrid,
    bringup,
    lifecycle,
    output,
    printed,
    pruning,
    report,
    search,
    sharing,
    subprocess_trials,
    throughput,
)

SCENARIOS = {
    "throughput": throughput,
    "subprocess": subprocess_trials,
    "balance": balance,
    "bringup": bringup,
    "biggrid": biggrid,
    "output": output,
    "lifecycle": lifecycle,  # issue 12
    "report": report,  # issue 15
    "search": search,  # issue 14: LCBench (only with --only search)
    "pruning": pruning,  # issue 14: pruning latency on a cluster worker (test hosts, root)
    "printed": printed,  # metrics a script prints: pruning latency against metrics.log
    "sharing": sharing,  # two sweeps on one cluster: a second sweep's first trial, the shares held
}
