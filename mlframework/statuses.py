"""A trial's final status, as its record, results.csv, the report and Flower spell it.

Plain constants and no imports, so that anything can use them: the worker and
the driver, the report, and the bench's peers (whose records the bench's
figures read with the same words).
"""

from __future__ import annotations

SUCCESS = "SUCCESS"  # the command exited 0
FAILURE = "FAILURE"  # it exited otherwise, timed out, or could not be started
PRUNED = "PRUNED"  # a search stopped it early (--prune)

#: Every final status a trial record may hold.
ALL = (SUCCESS, FAILURE, PRUNED)
