#!/usr/bin/env bash
# The bench: bench/run.sh [--quick] [--only NAME,...] [--runs N]
#
# Uses the framework's .venv (made with scripts/lib/venv.sh if missing), puts
# the peers (Ray Tune, Optuna; bench/requirements-peers.txt) into a venv of
# their own, bench/.venv-peers, on first use, then runs `python -m bench`,
# which prints the markdown table and writes bench/results/latest.{md,json}.
# A peer that cannot be installed is a row saying so, not a failed bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! .venv/bin/python -c 'import mlframework' 2>/dev/null; then
    # shellcheck source=scripts/lib/venv.sh
    source scripts/lib/venv.sh
    ensure_venv '.[report]'
fi

ensure_peers() {
    local venv=bench/.venv-peers
    local want
    want=$(sha256sum bench/requirements-peers.txt | cut -d' ' -f1)
    if grep -qxF "$want" "$venv/.installed" 2>/dev/null; then
        return 0
    fi
    rm -rf "$venv"
    echo "bench: installing the peers into $venv (first run only; Ray is large)" >&2
    local log
    log=$(mktemp)
    if python3 -m venv "$venv" >"$log" 2>&1 \
        && PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q \
            -r bench/requirements-peers.txt >>"$log" 2>&1; then
        echo "$want" >"$venv/.installed"
    else
        mkdir -p "$venv"
        { echo "pip install -r bench/requirements-peers.txt failed:"; grep -v '^WARNING' "$log" | tail -3; } \
            | tr '\n' ' ' >"$venv/.failed"
        echo "bench: $(cat "$venv/.failed")" >&2
    fi
    rm -f "$log"
}

# --only of rows that need no peers (no Ray Tune, Optuna alone or LCBench surrogate) skips the install.
needs_peers=1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --only) only="${args[$((i + 1))]:-}" ;;
        --only=*) only="${args[$i]#--only=}" ;;
    esac
done
if [ -n "${only:-}" ] && ! grep -qE '(^|,)(throughput|search)($|,|\.(ray|optuna|reference|micro|ours-random|ours-tpe))' <<<"$only"; then
    needs_peers=0
fi
[ "$needs_peers" = 0 ] || ensure_peers

exec .venv/bin/python -m bench "$@"
