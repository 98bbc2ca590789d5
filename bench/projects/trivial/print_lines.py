"""A training script that only prints: ``--lines N`` lines, to stdout or to /dev/null."""

import argparse
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--lines", type=int, default=1)
parser.add_argument("--sink", choices=["stdout", "devnull"], default="stdout")
parser.add_argument("--trial", default="")  # the grid's varying parameter; unused
args = parser.parse_args()

# One write() per line to either sink (each line is flushed, as the runner
# makes stdout unbuffered with PYTHONUNBUFFERED=1): only the reader differs.
out = sys.stdout if args.sink == "stdout" else open(os.devnull, "w", buffering=1)
for i in range(args.lines):
    out.write(f"step {i}: loss=0.{i:06d}\n")
    out.flush()
