#!/usr/bin/env bash
# Run the project's module NAME against the cluster, with the workers' output streamed back:
#
#   scripts/run_tasks.sh test_echo          # the echo smoke test
#   scripts/run_tasks.sh run_training       # the full sweep of parameters.yml, results in results/
#
# Further arguments go to the module (for the samples: `mlframework sweep` options).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv .
exec "$VENV/bin/python" -m mlframework run-task "$@"
