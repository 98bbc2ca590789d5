#!/usr/bin/env bash
# Re-sync the framework and project files to the cluster's hosts (only what changed)
# and restart the workers where something changed, so new task code takes effect.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv .
exec "$VENV/bin/python" -m mlframework update-files "$@"
