"""The report's figures from records: curves with pruned/failed trials, worker lanes, importance, PNGs, one page."""

from __future__ import annotations

import subprocess
import sys

from test_catalog import make_sweep, record

from mlframework.report import data as report_data
from mlframework.report.importance import parameter_importance
from mlframework.report.make import write_report
from mlframework.sweep.records.catalog import load_sweep


def sweep_with_every_status(tmp_path):
    records = [record(f"t{i}", i, score=float(i)) for i in range(8)]
    records.append(record("t8", 8, "PRUNED", score=0.2))
    records.append(record("t9", 9, "FAILURE"))
    for number, each in enumerate(records):  # one after another, except that t1 overlaps t0
        each["started_at"], each["finished_at"] = 100.0 + 10 * number, 110.0 + 10 * number
    records[1]["started_at"], records[1]["finished_at"] = 105.0, 120.0  # overlaps t0: a second lane
    records[2].update(gpu="0", gpu_util_mean=71.5, gpu_util_peak=99.0)  # as gpu_usage.py records it
    return load_sweep(make_sweep(tmp_path, "s", records))


def test_curves_mark_pruned_trials_and_list_those_without_history(tmp_path):
    built = report_data.build(sweep_with_every_status(tmp_path))
    statuses = {curve.trial: curve.status for curve in built.curves}
    assert statuses["t8"] == "PRUNED" and "t9" not in statuses
    assert built.without_curve == ["t9 FAILURE"]
    assert [p.name for p in built.parameters] == ["x", "opt"]
    assert built.gpu_keys == ["gpu_util"]
    assert report_data.gpu_use_text(built.sweep.records[2], "gpu_util") == "mean 71.5 / peak 99"


def test_overlapping_trials_of_one_worker_go_to_separate_lanes(tmp_path):
    built = report_data.build(sweep_with_every_status(tmp_path))
    lanes = [slot for slot in built.slots if "local1" in slot.label]
    assert len(lanes) == 2, [s.label for s in built.slots]
    assert any(slot.label.startswith("h1 · GPU 0") for slot in built.slots)
    assert all(0 < slot.busy_fraction <= 1 for slot in built.slots)


def test_importance_ranks_the_parameter_the_metric_follows(tmp_path):
    built = report_data.build(sweep_with_every_status(tmp_path))
    importances, note = parameter_importance(built)
    assert "fANOVA over 8 successful trials" in note
    assert max(importances, key=importances.__getitem__) == "x"  # score = index = x


def test_the_page_is_self_contained_and_pngs_are_written(tmp_path):
    sweep = sweep_with_every_status(tmp_path)
    written = write_report(sweep, png_dir=tmp_path / "png")
    page = written.html.read_text()
    assert "<script src=" not in page
    assert 'src="http' not in page and "Plotly.newPlot" in page
    for figure in ("metric-vs-parameters", "parallel-coordinates", "parameter-importance", "learning-curves"):
        assert f'data-figure="{figure}"' in page
    assert "stopped before reporting any step: t9 FAILURE" in page
    assert {p.name for p in written.pngs} == {
        "metric-vs-parameters.png",
        "parallel-coordinates.png",
        "parameter-importance.png",
        "learning-curves.png",
        "timeline.png",
    }
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written.pngs)


def test_without_the_report_extra_report_says_how_to_install_it(tmp_path):
    sweep_with_every_status(tmp_path)
    blocked = (
        "import sys; sys.modules['plotly'] = None; sys.modules['mlflow'] = None; from mlframework.cli.main import main"
    )
    for command in (["report", "s"], ["export", "s", "--mlflow", "sqlite:///x.db"]):
        result = subprocess.run(
            [sys.executable, "-c", f"{blocked}; sys.exit(main({[*command, '--results', str(tmp_path)]!r}))"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert "pip install 'mlframework[" in line


def test_the_mlflow_export_carries_gpu_use_as_the_worker_records_it():
    from mlframework.sweep.records.export_mlflow import trial_metrics

    record = {"trial": "t0001", "finished_at": 120.0, "gpu_util_mean": 71.5, "gpu_util_peak": 99.0}
    record["history"] = [{"time": 110.0, "step": 3, "values": {"loss": 0.5}}]
    logged = {(m.key, m.value, m.step) for m in trial_metrics(record)}
    assert {("gpu_util_mean", 71.5, 0), ("gpu_util_peak", 99.0, 0), ("loss", 0.5, 3)} <= logged
