"""A script that only prints its metrics is searched and pruned like one that writes metrics.log.

The script is an ordinary argparse program with no import of ours: it echoes its configuration,
then prints a validation loss each step in one of the forms scripts print (two words, ``name:``,
``name=``, a Hugging Face dict line, a Keras progress bar redrawn with carriage returns). Real
embedded workers run it; the pruner hears the printed values while the trials run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from report_probe import chromium, probe_page
from search_projects import pid_alive

from mlframework.sweep.search.study import JOURNAL

SCRIPT = """
import argparse, os, sys, time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--form", required=True)
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--pause", type=float, default=0.2)
args = parser.parse_args()
here = Path(__file__).parent
(here / "pids").mkdir(exist_ok=True)
(here / "pids" / os.environ["MLFRAMEWORK_TRIAL_ID"]).write_text(str(os.getpid()))
print("batch_size = 64")
print("gradient_accumulation_steps = 40")
print("tokens per iteration will be: 12,288")
for step in range(args.steps):
    time.sleep(args.pause)
    train, val = 3.0 - args.x * step * 0.4, 3.2 - args.x * step * 0.4
    if args.form == "words":
        print(f"step {step}: train loss {train:.4f}, val loss {val:.4f}")
    elif args.form == "colon":
        print(f"epoch {step} | val_loss: {val:.4f} | lr: 0.001")
    elif args.form == "equals":
        print(f"iter {step} loss={train:.4f} val_loss={val:.4f}")
    elif args.form == "dict":
        print({"eval_loss": round(val, 4), "eval_runtime": 0.5, "epoch": float(step)})
    elif args.form == "keras":
        print(f"Epoch {step + 1}/{args.steps}")
        sys.stdout.write(f"\\r1/2 [==>...] - loss: {train + 0.1:.4f}")
        sys.stdout.write(f"\\r2/2 [=====] - 0s - loss: {train:.4f} - val_loss: {val:.4f}\\n")
    sys.stdout.flush()
"""


def _project(root: Path, form: str) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(SCRIPT)
    (root / "tasks.py").write_text("import mlframework as mlf\n\ntrain = mlf.train_task('train.py')\n")
    (root / "search.yml").write_text(f"x: !uniform [0.0, 1.0]\nform: {form}\n")
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


def _search(tmp_path: Path, form: str, prune: str) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    project = _project(tmp_path / "proj", form)
    result = mlframework(
        "sweep",
        str(project),
        "-p",
        str(project / "search.yml"),
        "--local",
        "--workers",
        "2",
        "--search",
        "random",
        "--trials",
        "12",
        "--seed",
        "3",
        "--metric",
        "val loss",
        "--prune",
        prune,
        "--results",
        "res",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep_dir,) = (tmp_path / "res").iterdir()
    return project, sweep_dir, result


def _records(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("form", "prune"),
    [("words", "median"), ("colon", "median"), ("equals", "median"), ("dict", "median"), ("keras", "asha")],
)
def test_printed_metrics_are_pruned_live(tmp_path, form, prune):
    project, sweep_dir, result = _search(tmp_path, form, prune)

    records = _records(sweep_dir)
    assert len(records) == 12
    pruned = [r for r in records if r["status"] == "PRUNED"]
    assert pruned, f"no trial pruned ({[r['status'] for r in records]})"
    for record in pruned:
        assert record["stopped"] == "pruned" and record["stop_latency_s"] is not None
        assert not pid_alive(int((project / "pids" / record["trial"]).read_text())), "its process is gone"
    assert any(len(record["history"]) < 6 for record in pruned), "a pruned trial stopped before its last step"
    for record in records:
        assert "val loss" in record["metrics"], record["metrics"]
        assert not {"batch_size", "gradient_accumulation_steps", "be"} & set(record["metrics"]), "no config echo"
        steps = [point["step"] for point in record["history"] if "val loss" in point["values"]]
        assert steps == list(range(len(steps))) or steps == list(range(1, len(steps) + 1)), steps
    assert "ranked by val loss (min)" in result.stdout

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL)))
    study = optuna.load_study(study_name=sweep_dir.name, storage=storage)
    told = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert told and all(t.intermediate_values for t in told), "every trial's printed values reached the study"


def test_printed_learning_curves_reach_the_report_and_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    _, sweep_dir, _ = _search(tmp_path, "words", "median")
    cwd = tmp_path

    page = tmp_path / "report.html"
    assert mlframework("report", sweep_dir.name, "--results", "res", "-o", str(page), cwd=cwd).returncode == 0
    dom = chromium(probe_page(page), tmp_path / "profile", "--window-size=1280,1000", "--dump-dom")
    probe = json.loads(dom.stdout.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    assert probe["errors"] == []
    curves = probe["boxes"]["learning-curves"]
    assert curves["svg"] >= 1 and curves["marks"] > 0 and curves["h"] > 150, curves
    assert "no history" not in page.read_text()

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    export = mlframework("export", sweep_dir.name, "--results", "res", "--mlflow", uri, cwd=cwd)
    assert export.returncode == 0, export.stderr
    client = MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    best = max(
        client.search_runs([experiment.experiment_id], max_results=100),
        key=lambda run: len(client.get_metric_history(run.info.run_id, "val loss")),
    )
    history = client.get_metric_history(best.info.run_id, "val loss")
    assert [m.step for m in history] == list(range(6)), textwrap.shorten(str(history), 300)
