#!/usr/bin/env bash
# One line per live worker node of the cluster (as `celery status`); exits 1 when none answers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv .
exec "$VENV/bin/python" -m mlframework status "$@"
