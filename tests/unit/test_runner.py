"""The worker-side command runner: no shell, live lines, exit codes, metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from mlframework.sweep.trials.runner import LineSplitter, remove_stale_scratch, run_command, strip_ansi


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_lines_arrive_while_the_command_runs_not_at_exit():
    arrivals: list[tuple[float, str]] = []
    start = time.monotonic()
    result = run_command(
        python(
            """
            import time
            print("first", flush=True)
            time.sleep(1.0)
            print("second")
            """
        ),
        on_line=lambda stream, line: arrivals.append((time.monotonic() - start, line)),
    )
    assert result.exit_code == 0
    assert [line for _, line in arrivals] == ["first", "second"]
    assert arrivals[0][0] < arrivals[1][0] - 0.5, "the first line must be streamed before the command ends"


def test_stdout_and_stderr_are_told_apart_and_stderr_tail_kept():
    seen: list[tuple[str, str]] = []
    result = run_command(
        python(
            """
            import sys
            print("out line")
            for i in range(100):
                print(f"err {i}", file=sys.stderr)
            sys.exit(3)
            """
        ),
        on_line=lambda stream, line: seen.append((stream, line)),
        tail_lines=5,
    )
    assert result.exit_code == 3 and not result.ok
    assert ("stdout", "out line") in seen
    assert result.stderr_tail == [f"err {i}" for i in range(95, 100)]


def test_ansi_codes_are_stripped_and_progress_bars_split():
    seen: list[str] = []
    run_command(
        python(
            r"""
            import sys
            sys.stdout.write("\x1b[32mgreen\x1b[0m plain\n")
            sys.stdout.write("10%\r50%\r100%\n")
            """
        ),
        on_line=lambda stream, line: seen.append(line),
    )
    assert seen == ["green plain", "10%", "50%", "100%"]
    assert strip_ansi("\x1b]0;title\x07text\x1b[1;31m!") == "text!"


def test_arguments_with_spaces_and_quotes_reach_the_script_unchanged():
    seen: list[str] = []
    tricky = ['--name=it\'s a "test"', "--cmd=$(touch /tmp/never); rm -rf ~"]
    run_command(python("import sys; print(repr(sys.argv[1:]))") + tricky, on_line=lambda s, line: seen.append(line))
    assert seen == [repr(tricky)]


def test_metrics_logged_by_the_script_come_back_with_history(tmp_path):
    result = run_command(
        python(
            """
            from mlframework import metrics
            for epoch in range(3):
                metrics.log(step=epoch, loss=1.0 / (epoch + 1), accuracy=0.5 + epoch / 10)
            """
        ),
        cwd=tmp_path,
    )
    assert result.exit_code == 0
    assert result.metrics == {"loss": 1.0 / 3, "accuracy": 0.7}
    assert [record["step"] for record in result.history] == [0, 1, 2]


def test_a_missing_program_is_exit_127_not_an_exception():
    result = run_command(["/nonexistent/program", "--x=1"])
    assert result.exit_code == 127
    assert "cannot start" in result.stderr_tail[0]


def test_a_killed_command_reports_the_signal():
    result = run_command(python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
    assert result.exit_code == -9


def test_thousands_of_lines_are_all_delivered_in_order():
    lines: list[str] = []
    lock = threading.Lock()

    def collect(stream: str, line: str) -> None:
        with lock:
            lines.append(line)

    run_command(python("for i in range(20000): print(i)"), on_line=collect)
    assert lines == [str(i) for i in range(20000)]


def _lines_read(chunks: list[bytes]) -> list[str]:
    """The lines the runner hands on when a command's output arrives in ``chunks``."""
    splitter = LineSplitter()
    lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    return lines + splitter.end()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ab \n\r\x1b[mé", max_size=12), max_size=8))
def test_output_reads_the_same_lines_however_it_is_cut_into_reads(pieces):
    whole = "".join(pieces).encode()
    assert _lines_read([piece.encode() for piece in pieces]) == _lines_read([whole])


def test_output_lines_lose_colours_and_keep_each_progress_bar_state():
    output = b"plain\n\x1b[31mred\x1b[0m\n 10%\r 50%\r100%\r\nend"
    assert _lines_read([output]) == ["plain", "red", " 10%", " 50%", "100%", "end"]


def test_a_progress_bar_without_newlines_streams_each_redraw_as_it_comes():
    arrivals: list[tuple[float, str]] = []
    start = time.monotonic()
    script = (
        "import sys, time\nfor i in range(3):\n    sys.stderr.write(f'\\r{i}/3'); sys.stderr.flush(); time.sleep(0.4)\n"
    )
    run_command(python(script), on_line=lambda stream, line: arrivals.append((time.monotonic() - start, line)))
    assert [line for _, line in arrivals] == ["0/3", "1/3", "2/3"]
    assert arrivals[0][0] < 0.7, "the first redraw arrived only when the script ended"


def test_the_command_dies_with_the_process_that_runs_it(tmp_path):
    # The worker process (here: a child python) is SIGKILLed mid-trial, as the OOM killer would:
    # its training command must not go on running (on a GPU, while the trial runs elsewhere).
    pid_file = tmp_path / "pid"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys
        from mlframework.sweep.trials.runner import run_command
        run_command([sys.executable, "-c", "import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"])
    """),
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        training = int(pid_file.read_text())
    finally:
        worker.kill()
        worker.wait()
    deadline = time.monotonic() + 5
    while _alive(training) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(training), "the training command outlived its worker"


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_scratch_directories_of_gone_processes_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"mlframework-trials-{gone.pid}-abc"
    live = tmp_path / f"mlframework-trials-{os.getpid()}-def"
    for directory in (stale, live):
        directory.mkdir()
        (directory / "metrics-0.jsonl").write_text("{}\n")
    remove_stale_scratch()
    assert not stale.exists() and live.exists()


# A daemon made the classic way (fork, setsid, fork) that also clears its environment: no process group,
# session or tag of the command's left on it. The short-trial case: the daemon closes no pipe, so the
# runner searches for what it left; the daemon is re-parented to the runner (its subreaper).
DAEMON_WITHOUT_ENVIRONMENT = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve("/bin/sleep", ["sleep", sys.argv[1]], {})
    os._exit(0)
time.sleep(0.2)
print("trained", flush=True)
"""


def _running(argument: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if argument.encode() in args and state != b"Z":
            found.append(int(pid))
    return found


def test_a_double_forked_daemon_that_cleared_its_environment_is_stopped_with_its_command():
    argument = f"307.{os.getpid()}{int(time.monotonic() * 1000) % 10**6}"
    try:
        result = run_command([*python(DAEMON_WITHOUT_ENVIRONMENT), argument], grace=1.0)
        assert result.exit_code == 0 and result.duration_s < 3, "its output pipes are closed with it"
        assert not _running(argument), "the daemon outlived its command"
    finally:
        for pid in _running(argument):
            os.kill(pid, 9)


def test_the_runner_s_own_helpers_are_not_taken_for_a_command_s_daemons():
    helper = subprocess.Popen(["sleep", "30"])  # in this process's session, as nvidia-smi or git would be
    try:
        run_command([*python(DAEMON_WITHOUT_ENVIRONMENT), f"308.{os.getpid()}"], grace=1.0)
        assert helper.poll() is None, "a helper of the worker's own was stopped with a trial"
    finally:
        helper.kill()
        helper.wait()


def test_each_stream_keeps_its_own_tail_so_a_traceback_is_not_pushed_out_by_stdout():
    result = run_command(
        python(
            """
            import sys
            print("config line 0", flush=True)
            try:
                raise ValueError("Unknown config key: lrr")
            except ValueError:
                import traceback; traceback.print_exc(); sys.stderr.flush()
            for i in range(1, 60):
                print(f"config line {i}")
            sys.exit(1)
            """
        ),
        stdout_tail_lines=3,
    )
    assert result.stderr_tail[-1] == "ValueError: Unknown config key: lrr"
    assert result.stdout_tail == ["config line 57", "config line 58", "config line 59"]
