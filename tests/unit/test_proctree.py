"""A trial command's processes go with it: background children, double forks, a time limit."""

from __future__ import annotations

import subprocess
import sys
import uuid

from mlframework.sweep.trials.runner import run_command


def running(mark: str) -> list[str]:
    lines = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in lines.splitlines() if mark in line and not line.lstrip().startswith("Z")]


def test_children_left_running_are_stopped_and_do_not_count_in_the_duration(tmp_path):
    mark = f"{uuid.uuid4().int % 10**9:09d}"
    script = tmp_path / "leaves.py"
    script.write_text(
        "import subprocess\n"
        f"subprocess.Popen(['sleep', '300.{mark}'])\n"
        f"subprocess.Popen(['sleep', '301.{mark}'], start_new_session=True)\n"
        f"subprocess.Popen(['sh', '-c', '(setsid sleep 302.{mark} &)'], stdout=subprocess.DEVNULL)\n"
        "print('done')\n"
    )
    lines = []
    result = run_command([sys.executable, str(script)], on_line=lambda stream, line: lines.append(line))
    assert result.ok and lines == ["done"]
    assert result.duration_s < 5, "the children's 300 s are not the script's"
    assert running(mark) == [], "no child outlives the command, in its group or not"


def test_a_command_past_its_timeout_is_stopped_even_when_it_ignores_sigterm():
    result = run_command(["sh", "-c", "trap '' TERM; sleep 60"], timeout=0.5, grace=0.5)
    assert result.timed_out and result.exit_code == -9
    assert result.duration_s < 10


def test_merged_streams_keep_the_exact_order_written():
    lines = []
    script = "import sys\nfor i in range(200):\n    print(i, file=sys.stderr if i % 2 else sys.stdout, flush=True)\nsys.exit(1)"
    result = run_command(
        [sys.executable, "-c", script], on_line=lambda stream, line: lines.append(line), merge_streams=True
    )
    assert lines == [str(i) for i in range(200)]
    assert result.exit_code == 1 and result.stderr_tail[-1] == "199"
