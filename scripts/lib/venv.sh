# shellcheck shell=bash
# Sourced by the entry-point scripts: a virtual environment in .venv with the
# framework and the requirements they name, installed once and re-installed
# only when setup.cfg, pyproject.toml, the constraints or those files change.
# torch is pinned by scripts/constraints.txt (see the comment there).

#
# MLFRAMEWORK_VENV=DIR uses that virtual environment as it is (nothing is
# installed into it; it must already have mlframework), e.g. one shared by
# several checkouts. The scripts run "$VENV/bin/python".
VENV=${MLFRAMEWORK_VENV:-.venv}

# ensure_venv SPEC [REQUIREMENTS_FILE...]   e.g. ensure_venv '.[test]' projects/*/requirements.txt
ensure_venv() {
    local spec=$1
    shift
    if [ -n "${MLFRAMEWORK_VENV:-}" ]; then
        if ! "$VENV/bin/python" -c 'import mlframework' 2>/dev/null; then
            echo "error: MLFRAMEWORK_VENV=$VENV has no mlframework installed" >&2
            return 2
        fi
        return 0
    fi
    if [ ! -x .venv/bin/python ]; then
        if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                echo "installing python3-venv" >&2
                DEBIAN_FRONTEND=noninteractive apt-get update -qq
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
            else
                echo "error: python3 cannot make virtual environments; install python3-venv" >&2
                return 2
            fi
        fi
        python3 -m venv .venv
    fi

    local stamp=.venv/.mlframework-installed
    local want
    want=$(printf '%s\n' "$spec" "$@" | cat - setup.cfg pyproject.toml scripts/constraints.txt "$@" | sha256sum | cut -d' ' -f1)
    if grep -qxF "$want" "$stamp" 2>/dev/null; then
        return 0
    fi
    local req_args=()
    local req
    for req in "$@"; do
        req_args+=(-r "$req")
    done
    echo "installing Python packages into .venv (first run only)" >&2
    PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install -q \
        -c scripts/constraints.txt -e "$spec" "${req_args[@]}"
    echo "$want" >>"$stamp"
}
