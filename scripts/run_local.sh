#!/usr/bin/env bash
# The main job on a fresh machine: a local sweep of a sample project in embedded
# mode (no RabbitMQ, no Docker, no SSH), set up in .venv on the first run.
#
#   scripts/run_local.sh [PROJECT] [mlframework sweep options...]
#
# PROJECT is a name under projects/ (default: mnist) or a path. Results go to
# results/<sweep-id>/ (results.csv, trials.jsonl, logs/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh

project=mnist
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    project=$1
    shift
fi
if [ -d "projects/$project" ]; then
    project=projects/$project
elif [ ! -d "$project" ]; then
    echo "run_local.sh: no project '$project' (not a directory, nor a name under projects/)" >&2
    exit 2
fi

requirements=()
[ -f "$project/requirements.txt" ] && requirements+=("$project/requirements.txt")
ensure_venv ".[report]" "${requirements[@]}"
exec "$VENV/bin/mlframework" sweep "$project" --local "$@"
