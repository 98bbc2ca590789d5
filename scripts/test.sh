#!/usr/bin/env bash
# The test command: scripts/test.sh [pytest args]  (ruff and mypy first, then pytest)
#
# Installs what the tests need and is missing (Debian's rabbitmq-server, shellcheck,
# chromium and python3-venv when run as root; .venv with the package, its test extra and the
# sample projects' requirements), then runs pytest. A second run only runs pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh

POLICY_RC=/usr/sbin/policy-rc.d
created_policy=0

cleanup_policy() {
    if [ "$created_policy" = 1 ]; then
        rm -f "$POLICY_RC"
        created_policy=0
    fi
}

install_system_packages() {
    local missing=()
    # The private test broker runs Debian's unwrapped scripts (testbed/rabbitmq.py).
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null \
        || missing+=(rabbitmq-server)
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    # The report test opens report.html in a real headless browser.
    command -v chromium >/dev/null || missing+=(chromium)
    if [ ! -x .venv/bin/python ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    [ "${#missing[@]}" -gt 0 ] || return 0

    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "test.sh: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
        return 0  # the tests then fail and say what is missing
    fi

    # Exit code 101 = "action forbidden": the tests start a private broker of
    # their own, so the package must not start the system one.
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        created_policy=1
        trap cleanup_policy EXIT
    fi
    echo "test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    cleanup_policy

    # Where an init system started it anyway, stop it: it would only take memory.
    if command -v systemctl >/dev/null; then
        systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
    fi
    if command -v service >/dev/null; then
        service rabbitmq-server stop >/dev/null 2>&1 || true
    fi
}

# The linter, the type checker and the import-layer contracts (settings in pyproject.toml) run before the
# tests, on every run: an import that runs back up the layers fails the suite.
static_checks() {
    echo "test.sh: ruff check, ruff format --check, mypy, lint-imports" >&2
    "$VENV/bin/python" -m ruff check --quiet . \
        && "$VENV/bin/python" -m ruff format --check --quiet . \
        && "$VENV/bin/python" -m mypy \
        && "$VENV/bin/lint-imports" --no-cache
}

install_system_packages
ensure_venv '.[test]' projects/*/requirements.txt
static_checks
exec "$VENV/bin/python" -m pytest "$@"
