"""4. Cluster bring-up: infrainit on 1, 2 and 3 test hosts, and update_files with nothing changed.

Needs the SSH + Docker test hosts of ``tests/testhosts.py`` (root, network
namespaces, sshd, dockerd, the cached base images) and the lifecycle of
``mlframework/cluster/bootstrap.py``. Not measured by this version of the
bench: the rows say why, so that the table never hides a missing figure.
"""

from __future__ import annotations

import importlib.util
import os

from bench.context import REPO, Context
from bench.figures import Figure, Target


def _why_not() -> str:
    testhosts = REPO / "tests" / "testhosts.py"
    if not testhosts.exists() or not (REPO / "mlframework" / "cluster" / "bootstrap.py").exists():
        return "not run: needs test hosts (tests/testhosts.py) and mlframework/cluster/bootstrap.py"
    if os.geteuid() != 0:
        return "not run: needs test hosts (tests/testhosts.py), which need root"
    if importlib.util.find_spec("docker") is None:
        return "not run: needs test hosts (tests/testhosts.py): the docker SDK is missing"
    return "not run: test hosts present, bring-up timing not implemented in the bench yet"


def run(ctx: Context) -> tuple[list[Figure], list[Target]]:
    figures = [
        Figure("bringup", f"infrainit-{n}", f"ours: infrainit on {n} test host(s)", "s") for n in (1, 2, 3)
    ] + [Figure("bringup", "update-files", "ours: update_files, nothing changed", "s")]
    figures = [figure for figure in figures if ctx.wanted(figure.key)]
    reason = _why_not()
    for figure in figures:
        figure.unavailable = reason
    targets = [
        Target("bringup.infrainit-3", "bringup.infrainit-1", "<=", 1.3, "<= 1.3x one host"),
        Target("bringup.update-files", None, "<=", 3.0, "< 3 s"),
    ]
    return figures, targets
