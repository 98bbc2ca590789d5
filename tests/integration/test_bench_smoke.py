"""The bench's smoke test (bench/, issue 6): the rows that need no services run and give numbers.

``python -m bench --quick`` on embedded mode and the process pool only: no
RabbitMQ, no peers venv. Correctness, not speed: every selected row has a
figure, every target a verdict; no timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROWS = [
    "throughput.embedded",
    "throughput.pool",
    "subprocess.embedded",
    "subprocess.pool",
    "balance.embedded",
    "balance.pool",
    "biggrid.first-send-1e6",
    "biggrid.memory-1e6",
    "output.embedded",
]


def test_quick_bench_of_the_serverless_rows(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", ",".join(ROWS), "--results", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    figures = {figure["key"]: figure for figure in report["figures"]}
    expected = [row for row in ROWS if not row.startswith("output.")] + [
        "output.embedded.stdout",
        "output.embedded.devnull",
        "output.embedded.extract",
        "output.embedded.plain",
    ]
    assert sorted(figures) == sorted(expected)
    for key, figure in figures.items():
        assert figure["unavailable"] is None, f"{key}: {figure['unavailable']}\n{done.stderr[-3000:]}"
        assert len(figure["values"]) == 1 and figure["values"][0] > 0, (key, figure["values"])
    verdicts = {target["numerator"]: target["met"] for target in report["targets"]}
    assert {
        "throughput.embedded",
        "balance.embedded",
        "biggrid.memory-1e6",
        "output.embedded.stdout",
        "output.embedded.extract",
    } <= set(verdicts)
    assert all(isinstance(met, bool) for key, met in verdicts.items() if key != "throughput.embedded"), verdicts
    table = (tmp_path / "latest.md").read_text()
    assert table == done.stdout.strip() + "\n" or table.strip() in done.stdout
    for key in expected:
        assert f"| {key.split('.')[0]} |" in table
