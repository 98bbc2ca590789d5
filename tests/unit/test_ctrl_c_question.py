"""The question after Ctrl-C of a cluster sweep (cli_stop.offer_cancel): when it is asked, and a "no".

Cancelling on a broker is tested in tests/integration/test_ctrl_c_prompt.py; here nothing reaches one.
"""

from __future__ import annotations

import io
import signal

import pytest
from test_catalog import make_sweep, record

from mlframework.cli.stop import StopSignals, offer_cancel


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _stopped_by(number: int) -> StopSignals:
    stop = StopSignals()
    stop.received = number
    return stop


def _sweep(tmp_path):
    return make_sweep(tmp_path, "s1", [record("t0000", 0, score=0.5)], status="interrupted", total=4)


@pytest.mark.parametrize(
    "number, stdin",
    [(signal.SIGINT, io.StringIO("y\n")), (signal.SIGTERM, _Terminal("y\n")), (signal.SIGHUP, _Terminal("y\n"))],
    ids=["no terminal", "SIGTERM", "SIGHUP"],
)
def test_nothing_is_asked_without_a_terminal_or_after_another_signal(tmp_path, monkeypatch, capsys, number, stdin):
    _sweep(tmp_path)
    monkeypatch.setattr("sys.stdin", stdin)
    offer_cancel(_stopped_by(number), tmp_path, "s1", broker=object())
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
    assert stdin.read() == "y\n", "nothing was read"


@pytest.mark.parametrize("answer", ["\n", "n\n", ""], ids=["Enter", "n", "Ctrl-D"])
def test_ctrl_c_in_a_terminal_asks_once_and_no_leaves_the_trials(tmp_path, monkeypatch, capsys, answer):
    _sweep(tmp_path)
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    offer_cancel(_stopped_by(signal.SIGINT), tmp_path, "s1", broker=object())
    err = capsys.readouterr().err
    assert err.count("cancel its 3 unfinished trial(s) on the cluster? (no: they keep running for --resume) [y/N]") == 1
    assert "mlframework: sweep s1 left running on the cluster" in err


def test_nothing_is_asked_when_every_trial_was_recorded(tmp_path, monkeypatch, capsys):
    make_sweep(tmp_path, "s1", [record(f"t000{i}", i, score=0.5) for i in range(2)], status="interrupted", total=2)
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    offer_cancel(_stopped_by(signal.SIGINT), tmp_path, "s1", broker=object())
    assert capsys.readouterr().err == ""
