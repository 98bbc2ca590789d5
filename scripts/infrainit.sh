#!/usr/bin/env bash
# Start the cluster: RabbitMQ + Flower on the master, Celery workers in Docker on the worker hosts.
#
#   scripts/infrainit.sh -a <[user@]host1,...> [-f] [-i <ssh key>] -r <remote path> -d <project>
#                        [-m local|N] [-w local,N1,N2...] [-b <broker address>]
#                        [--base-image IMAGE] [--broker-image IMAGE] [--image-source build|ship]
#
# See `scripts/infrainit.sh --help` and the README. Writes config.sh (without -f),
# .mlframework/secrets.env (mode 0600) and ./infra_clean.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh
ensure_venv .
exec "$VENV/bin/python" -m mlframework infrainit "$@"
