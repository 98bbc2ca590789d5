"""Sweeps with several objectives end to end (embedded mode through the CLI): a grid's Pareto front, exactly,
and a two-objective search pruned by multi-objective ASHA."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
from report_probe import chromium, probe_page

from mlframework.sweep.search.study import JOURNAL

# accuracy rises with width * depth, latency with width and depth; width 8 at depth 1 crashes after reporting
# the best values of all (a failed trial is never on the front).
GRID_SCRIPT = """
import argparse, sys
from mlframework import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--width", type=int, required=True)
parser.add_argument("--depth", type=int, required=True)
args = parser.parse_args()
if (args.width, args.depth) == (8, 1):
    metrics.log(accuracy=0.999, latency_ms=1.0)
    sys.exit(3)
metrics.log(accuracy=1 - 0.5 / (args.width * args.depth), latency_ms=5 * args.width + 10 * args.depth)
"""

# y only costs: accuracy falls and latency rises with it, so a trial of a larger y is dominated by one of the same x.
SEARCH_SCRIPT = """
import argparse, time
from mlframework import metrics

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--y", type=float, required=True)
parser.add_argument("--steps", type=int, default=8)
args = parser.parse_args()
for step in range(args.steps):
    time.sleep(0.25)
    accuracy = args.x * (1 - args.y) * (step + 1) / args.steps
    metrics.log(step=step, accuracy=accuracy, latency_ms=10 + 20 * args.x + 20 * args.y)
"""


def make_project(root: Path, script: str, parameters: str) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(script)
    (root / "tasks.py").write_text("import mlframework as mlf\n\ntrain = mlf.train_task('train.py')\n")
    (root / "parameters.yml").write_text(textwrap.dedent(parameters))
    return root


def mlframework(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_pareto_front_of_a_small_grid_is_recorded_and_shown_exactly(tmp_path):
    project = make_project(tmp_path / "proj", GRID_SCRIPT, "width: [1, 2, 4, 8]\ndepth: [1, 2, 3]\n")
    objectives = ["--metric", "accuracy:max", "--metric", "latency_ms:min"]
    result = mlframework(
        "sweep", str(project), "--local", "--workers", "2", *objectives, "--constraint", "latency_ms<=45",
        "--results", "res", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr  # the crash of width 8, depth 1
    (sweep_dir,) = (tmp_path / "res").iterdir()
    ranks = {(row["width"], row["depth"]): row["pareto_rank"] for row in rows(sweep_dir)}
    # By hand: (1,2) is dominated by (2,1), (1,3) by (2,2), (2,3) by (4,2); (2,2) and (4,1) tie, both on the front;
    # (4,3) and (8,2), (8,3) break latency_ms<=45; (8,1) failed.
    assert ranks == {
        ("1", "1"): "1", ("1", "2"): "2", ("1", "3"): "2",
        ("2", "1"): "1", ("2", "2"): "1", ("2", "3"): "2",
        ("4", "1"): "1", ("4", "2"): "1", ("4", "3"): "",
        ("8", "1"): "", ("8", "2"): "", ("8", "3"): "",
    }  # fmt: skip
    front = ["t0007", "t0004", "t0006", "t0003", "t0000"]  # (4,2), (2,2), (4,1), (2,1), (1,1): best accuracy first
    trial_of = {(row["width"], row["depth"]): row["trial"] for row in rows(sweep_dir)}
    assert [trial_of[k] for k in [("4", "2"), ("2", "2"), ("4", "1"), ("2", "1"), ("1", "1")]] == front
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["objectives"] == [{"name": "accuracy", "mode": "max"}, {"name": "latency_ms", "mode": "min"}]
    assert meta["constraints"] == ["latency_ms<=45"]
    summary = f"Pareto front: 5 trial(s): {', '.join(front)}"
    assert "Pareto front of accuracy:max, latency_ms:min keeping latency_ms<=45" in result.stdout
    assert summary in result.stdout, result.stdout
    shown = mlframework("show", sweep_dir.name, "--results", "res", cwd=tmp_path)
    assert shown.returncode == 0 and summary in shown.stdout, shown.stdout + shown.stderr
    listed = mlframework("ls", "--results", "res", "--json", cwd=tmp_path)
    (entry,) = json.loads(listed.stdout)
    assert entry["front"] == front
    report = mlframework(
        "report", sweep_dir.name, "--results", "res", "-o", "report.html", "--png", "figures", cwd=tmp_path
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert (tmp_path / "figures" / "pareto-front.png").stat().st_size > 10_000
    page = (tmp_path / "report.html").read_text()
    assert json.loads(page.split("window.mlframeworkReport=", 1)[1].split(";</script>", 1)[0])["front"] == front
    dom = chromium(probe_page(tmp_path / "report.html"), tmp_path / "profile", "--window-size=1280,1000", "--dump-dom")
    probe = json.loads(dom.stdout.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    assert probe["errors"] == []
    drawn = probe["boxes"]["pareto-front"]
    assert drawn["h"] > 300 and drawn["svg"] >= 1, drawn
    # the 5 trials of the front, the 3 dominated ones, the 3 breaking the constraint: one marker each
    assert drawn["points"] == 5 + 3 + 3 and drawn["lines"] >= 1, drawn
    resumed = mlframework("sweep", "--resume", sweep_dir.name, "--local", "--results", "res", cwd=tmp_path)
    assert summary in resumed.stdout, "--resume keeps the objectives: " + resumed.stdout + resumed.stderr


def test_a_two_objective_search_prunes_with_multi_objective_asha_and_records_its_front(tmp_path):
    space = "x: !uniform [0.05, 1.0]\ny: !uniform [0.0, 0.9]\nsteps: 8\n"
    project = make_project(tmp_path / "proj", SEARCH_SCRIPT, space)
    result = mlframework(
        "sweep", str(project), "--local", "--workers", "2", "--search", "random", "--trials", "14", "--seed", "3",
        "--metric", "accuracy", "--metric", "latency_ms:min", "--prune", "asha", "--results", "res", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    table = rows(sweep_dir)
    statuses = [row["status"] for row in table]
    assert len(table) == 14 and "PRUNED" in statuses and "SUCCESS" in statuses, statuses
    assert f"{statuses.count('PRUNED')} pruned" in result.stdout
    on_front = [row for row in table if row["pareto_rank"] == "1"]
    assert on_front and all(row["status"] == "SUCCESS" for row in on_front), "pruned trials are never on the front"
    assert all(row["pareto_rank"] == "" for row in table if row["status"] == "PRUNED")
    assert "Pareto front of accuracy:max, latency_ms:min" in result.stdout, result.stdout
    assert f"Pareto front: {len(on_front)} trial(s)" in result.stdout
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(sweep_dir / JOURNAL)))
    study = optuna.load_study(study_name=sweep_dir.name, storage=storage)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert len(pruned) == statuses.count("PRUNED")
    assert all(isinstance(t.system_attrs.get("completed_rung_0"), list) for t in pruned), "rung values recorded"
    report = mlframework("report", sweep_dir.name, "--results", "res", "-o", "report.html", cwd=tmp_path)
    assert report.returncode == 0, report.stdout + report.stderr
    page = (tmp_path / "report.html").read_text()
    facts = json.loads(page.split("window.mlframeworkReport=", 1)[1].split(";</script>", 1)[0])
    assert sorted(facts["front"]) == sorted(row["trial"] for row in on_front)
    assert 'data-figure="pareto-front"' in page and "pruned (last values)" in page
    told_front = {t.number for t in study.best_trials}
    assert told_front == {int(row["trial"][1:]) for row in on_front}, "the study's front is the csv's"
