"""List values reach a real script: ``layers: [[64, 64], [128]]`` on a --local sweep with spread_lists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from scratch_projects import make_project

# Writes the argv it got and what argparse made of it (nargs="+": a list per option).
TAKES_LISTS = """
import argparse, json, sys
parser = argparse.ArgumentParser()
parser.add_argument("--layers", type=int, nargs="+", required=True)
parser.add_argument("--acts", nargs="+", required=True)
parser.add_argument("--lr", type=float, required=True)
args = parser.parse_args()
with open("argv.json", "w") as out:
    json.dump({"argv": sys.argv[1:], "layers": args.layers, "acts": args.acts, "lr": args.lr}, out)
print(f"depth={len(args.layers)}")
"""

GRID = "lr: 0.5\nlayers: [[64, 64], [128]]\nacts: [[relu, tanh]]\n"


def test_each_inner_list_is_one_trial_and_the_script_gets_it_as_several_arguments(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", GRID)
    (project / "lists.py").write_text(TAKES_LISTS)
    (project / "tasks.py").write_text(
        "import mlframework as mlf\n\n"
        "train = mlf.train_task('lists.py', arguments=mlf.ArgumentStyle(spread_lists=True), cwd='trial')\n"
    )
    listed = subprocess.run(
        [sys.executable, "-m", "mlframework", "params", str(project / "parameters.yml"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"lr": 0.5, "layers": [64, 64], "acts": ["relu", "tanh"]},
        {"lr": 0.5, "layers": [128], "acts": ["relu", "tanh"]},
    ]
    shown = subprocess.run(
        [sys.executable, "-m", "mlframework", "params", str(project / "parameters.yml"), "--project", str(project)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "--lr=0.5 --layers 64 64 --acts relu tanh",
        "--lr=0.5 --layers 128 --acts relu tanh",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "mlframework", "sweep", str(project), "--local", "--workers", "2", "--results", "res"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").glob("*/")
    got = [json.loads((sweep_dir / "work" / t / "argv.json").read_text()) for t in ("t0000", "t0001")]
    assert [g["argv"] for g in got] == [
        ["--lr=0.5", "--layers", "64", "64", "--acts", "relu", "tanh"],
        ["--lr=0.5", "--layers", "128", "--acts", "relu", "tanh"],
    ]
    assert [g["layers"] for g in got] == [[64, 64], [128]] and got[0]["acts"] == ["relu", "tanh"]
    trials = sorted(
        (json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()), key=lambda r: r["trial"]
    )
    assert [r["params"]["layers"] for r in trials] == [[64, 64], [128]]
    assert [r["metrics"]["depth"] for r in trials] == [2, 1]
