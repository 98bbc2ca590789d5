"""ls / show / report / export on the directory a real embedded sweep wrote; report.html in a real Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from report_probe import chromium, probe_page
from scratch_projects import make_project

GRID = "x: [-1, 0.5, 1, 2, 3]\nlabel: [a, b]\nsleep: [0.2]\n"  # x=-1 fails (exit 3): 8 succeed, 2 fail
FIGURES = ("metric-vs-parameters", "parallel-coordinates", "parameter-importance", "learning-curves", "timeline")


def mlframework(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlframework", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", "MLFRAMEWORK_LIVE_REPORT": "1"},
    )


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """(working directory, sweep directory) of one finished embedded sweep with failures."""
    cwd = tmp_path_factory.mktemp("records")
    project = make_project(cwd / "proj", GRID)
    result = mlframework("sweep", str(project), "--local", "--workers", "2", "--sweep-id", "demo", "-q", cwd=cwd)
    assert result.returncode == 1, result.stdout + result.stderr  # some trials failed
    return cwd, cwd / "results" / "demo"


def test_ls_and_show_tell_the_sweep_from_its_directory(swept):
    cwd, _ = swept
    listed = mlframework("ls", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith("demo")]
    assert "proj" in line and "grid" in line and "finished" in line and "8/2/0 of 10" in line
    assert "score=9" in line  # x=3: score 3 * 3 at the last step
    (row,) = json.loads(mlframework("ls", "--json", cwd=cwd).stdout)
    assert (row["status"], row["done"], row["failed"], row["best"]) == ("finished", 8, 2, 9.0)
    shown = mlframework("show", "demo", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    assert "exit code 3" in shown.stdout and "diverged at x=-1.0" in shown.stdout
    assert "best: score=9 in t0008: --x=3 --label=a --sleep=0.2" in shown.stdout


def test_the_driver_left_a_current_report_and_report_writes_pngs(swept):
    cwd, directory = swept
    result = mlframework("report", "demo", "-o", "page.html", "--png", "png", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert (cwd / "page.html").stat().st_size > 1_000_000  # plotly's script is inside
    assert sorted(p.stem for p in (cwd / "png").iterdir()) == sorted(FIGURES)
    # The driver's own (live) report of the finished sweep: rendered by a child process after the end.
    for _ in range(600):
        if (directory / "report.html").exists():
            break
        import time

        time.sleep(0.1)
    assert '"trials": 10' in (directory / "report.html").read_text()


def test_the_driver_keeps_report_html_current_while_the_sweep_runs(tmp_path, monkeypatch):
    import re
    import time

    from scratch_projects import start_sweep

    monkeypatch.setenv("MLFRAMEWORK_LIVE_REPORT", "1")
    project = make_project(tmp_path / "proj", "x: [1, 2, 3, 4, 5, 6, 7, 8]\nsleep: [1.5]\n")
    driver = start_sweep(tmp_path, str(project), "--local", "--workers", "1", "--results", "res", "--sweep-id", "live")
    page = tmp_path / "res" / "live" / "report.html"
    try:
        deadline = time.monotonic() + 120
        while not page.exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert page.exists() and driver.poll() is None, "a report appeared while the sweep ran"
        recorded = int(re.search(r'"trials": (\d+)', page.read_text()).group(1))
        assert 0 < recorded < 8
        driver.wait(timeout=180)
    finally:
        driver.kill()
    deadline = time.monotonic() + 60
    while '"trials": 8' not in page.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert '"trials": 8' in page.read_text(), "the final report shows every trial"


def test_a_sweep_killed_mid_run_is_interrupted_not_running(tmp_path):
    from scratch_projects import start_sweep, wait_for_records

    project = make_project(tmp_path / "proj", "x: [1, 2, 3, 4, 5, 6]\nsleep: [2]\n")
    driver = start_sweep(tmp_path, str(project), "--local", "--workers", "1", "--results", "res")
    try:
        directory = wait_for_records(tmp_path / "res", 1)
    finally:
        driver.kill()  # SIGKILL: the driver cannot write "interrupted" itself
        driver.wait()
    # The embedded watchdog records "interrupted" within moments; until it has, ls tells from the dead pid.
    (row,) = json.loads(mlframework("ls", "--json", "--results", "res", cwd=tmp_path).stdout)
    assert row["status"] == "interrupted", row
    recorded = json.loads((directory / "sweep.json").read_text())["status"]
    assert recorded == "interrupted" or "is gone" in (row["status_note"] or ""), row
    assert row["total"] == 6 and row["recorded"] >= 1


def test_export_to_mlflow_is_read_back_and_idempotent(swept, tmp_path):
    from mlflow import MlflowClient

    cwd, _ = swept
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = mlframework("export", "demo", "--mlflow", uri, cwd=cwd)
    assert first.returncode == 0, first.stderr
    assert "10 trial run(s) created, 0 already there" in first.stdout
    second = mlframework("export", "demo", "--mlflow", uri, cwd=cwd)
    assert "0 trial run(s) created, 10 already there" in second.stdout

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("proj")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == 11  # nothing doubled by the second export
    (parent,) = [r for r in runs if r.data.tags.get("mlframework.kind") == "sweep"]
    assert parent.info.status == "FINISHED" and parent.data.tags["mlframework.status"] == "finished"
    trials = {r.data.tags["mlframework.trial"]: r for r in runs if r is not parent}
    assert {r.data.tags["mlflow.parentRunId"] for r in trials.values()} == {parent.info.run_id}
    best = trials["t0008"]
    assert best.data.params == {"x": "3", "label": "a", "sleep": "0.2"}
    assert best.info.status == "FINISHED" and best.data.tags["mlframework.host"]
    assert best.data.tags["mlframework.command"].endswith("--x=3 --label=a --sleep=0.2")
    steps = client.get_metric_history(best.info.run_id, "score")
    assert [(m.step, m.value) for m in steps] == [(0, 3.0), (1, 6.0), (2, 9.0)]
    failed = trials["t0000"]
    assert failed.info.status == "FAILED" and failed.data.tags["mlframework.exit_code"] == "3"
    assert "diverged" in failed.data.tags["mlframework.stderr_tail"]


def test_report_renders_every_figure_in_headlesschromium(swept, tmp_path):
    from PIL import Image

    cwd, _ = swept
    assert mlframework("report", "demo", "-o", str(tmp_path / "report.html"), cwd=cwd).returncode == 0
    probed = probe_page(tmp_path / "report.html")
    dom = chromium(probed, tmp_path / "profile1", "--window-size=1280,1000", "--dump-dom")
    assert '<pre id="probe">' in dom.stdout, dom.stderr[-2000:]
    probe = json.loads(dom.stdout.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    assert probe["errors"] == []
    assert probe["rows"] == 10
    for figure in FIGURES:
        box = probe["boxes"][figure]
        assert box["svg"] >= 1 and box["w"] > 300 and box["h"] > 150, (figure, box)
    assert probe["boxes"]["parallel-coordinates"]["canvas"] >= 1  # plotly draws its lines with WebGL

    height = int(probe["height"]) + 50
    shot = tmp_path / "report.png"
    chromium(probed, tmp_path / "profile2", f"--window-size=1280,{height}", f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    keep = os.environ.get("MLFRAMEWORK_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
    for figure in FIGURES:
        box = probe["boxes"][figure]
        area = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["w"]), int(box["y"] + box["h"])))
        colors = area.getcolors(maxcolors=1 << 20) or []
        inked = sum(count for count, rgb in colors if sum(rgb) < 3 * 235)
        assert inked > 0.005 * area.width * area.height, f"{figure}: its plot area is blank in the screenshot"
        assert len(colors) > 20, f"{figure}: hardly anything drawn"
