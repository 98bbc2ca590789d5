"""``python -m bench [--quick] [--only NAME,...] [--runs N]``: run the scenarios, print the table.

The table is also written to ``RESULTS/latest.md`` and, with every run's
values, to ``RESULTS/latest.json`` (default RESULTS: bench/results).
``--only`` takes scenario names (``throughput``) or rows (``throughput.pool``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.context import BENCH_DIR, REPO, Context, Options
from bench.figures import Figure, Target, as_json, markdown
from bench.scenarios import SCENARIOS
from mlframework import envvars

log = logging.getLogger("bench")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test, not a measurement")
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios or rows; scenarios: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results", help="where latest.md/json go")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of each of our driver runs here")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name.split(".")[0] not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    args.only = only
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Workers and drivers started from here import this checkout's mlframework,
    # whatever an editable install in the venv points at.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    # A sweep's final report.html render runs after it, in a child process: it would overlap the next
    # scenario's timing. The report's own cost has its rows (scenario "report").
    os.environ.setdefault(envvars.LIVE_REPORT, "0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = Options(quick=args.quick, runs=args.runs, only=args.only, profile_dir=args.profile)
    ctx = Context(options)
    targets: list[Target] = []
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    found_by_scenario: dict[str, list[Figure]] = {}
    # Bring-up last: the test hosts it tears down (network namespaces, dockerd) keep the kernel busy
    # for a while after it returns, which would skew the scenario timed next. The table keeps issue order.
    run_order = sorted(SCENARIOS, key=lambda scenario_name: scenario_name == "bringup")
    try:
        for name in run_order:
            if options.only and not any(item.split(".")[0] == name for item in options.only):
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            scenario_started = time.monotonic()
            found, bars = SCENARIOS[name].run(ctx)
            found_by_scenario[name] = found
            targets += [bar for bar in bars if any(f.key == bar.numerator for f in found)]
            print(f"bench: {name} done in {time.monotonic() - scenario_started:.0f} s", file=sys.stderr, flush=True)
    finally:
        ctx.close()
    figures = [figure for name in SCENARIOS for figure in found_by_scenario.get(name, [])]
    meta = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": options.runs,
        "quick": options.quick,
        "only": options.only,
        "seconds": round(time.monotonic() - started),
        # Other work on the machine skews every figure: the 1-minute load average before and after.
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    m = meta["machine"]
    header = (
        f"Bench of {meta['date']} on {m['nproc']} CPU(s), {m['cpu']}, {m['memory_gib']} GiB RAM, "
        f"Python {m['python']}, load {meta['load'][0]} before / {meta['load'][1]} after"
        f"{' (--quick: sizes too small to mean anything)' if options.quick else ''}\n\n"
    )
    table = header + markdown(figures, targets, options.runs)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.md").write_text(table, encoding="utf-8")
    (args.results / "latest.json").write_text(as_json(figures, targets, meta) + "\n", encoding="utf-8")
    print(table)
    return 0
