#!/usr/bin/env bash
# Install the NVIDIA Container Toolkit on a remote Ubuntu host over SSH, so that
# its Docker can hand GPUs to containers (docker run --gpus ...): what the
# mlframework GPU workers need.
#
#   nvdocker_install/install_ubuntu.sh <[user@]host> [-i KEY] [--smoke-image IMAGE] [--dry-run]
#
#   -i KEY               SSH private key to log in with
#   --smoke-image IMAGE  image of the final check (default: ubuntu); the toolkit
#                        mounts nvidia-smi into it, so any image with a shell works
#   --dry-run            print what would run on the host; connect to nothing
#
# The steps, as NVIDIA documents them for apt; a step already done is skipped,
# so running it again is safe:
#   1. NVIDIA's apt repository, signed by its key in /usr/share/keyrings
#   2. the nvidia-container-toolkit package
#   3. nvidia-ctk runtime configure --runtime=docker (/etc/docker/daemon.json)
#   4. restart Docker, only when step 3 changed its configuration: a restart
#      stops the host's running containers (unless dockerd has live-restore)
#   5. smoke check: docker run --rm --gpus all IMAGE nvidia-smi
#
# The host needs Ubuntu (any Debian-like works), Docker, the NVIDIA driver
# (nvidia-smi), HTTPS access to nvidia.github.io and to the smoke image's
# registry, and root or sudo for the SSH user. Everything runs in one SSH
# session as root (through sudo unless the user is root); sudo may ask for a
# password when this script runs in a terminal.
#
# Exit status: 0 installed and checked, 1 failed on the host or could not
# connect, 2 bad usage.

set -euo pipefail

readonly USAGE="usage: install_ubuntu.sh <[user@]host> [-i KEY] [--smoke-image IMAGE] [--dry-run]"

die_usage() {
    echo "install_ubuntu.sh: $1; $USAGE" >&2
    exit 2
}

# Runs on the host, as root, under bash: sent as its own source (declare -f),
# so what --dry-run prints is exactly what would run.
remote_install() {
    set -euo pipefail
    local smoke_image=$1
    local keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
    local list=/etc/apt/sources.list.d/nvidia-container-toolkit.list
    local repo=https://nvidia.github.io/libnvidia-container
    local host
    host=$(hostname)
    export DEBIAN_FRONTEND=noninteractive

    echo "==> $host: prerequisites"
    if ! command -v apt-get >/dev/null; then
        echo "error: $host has no apt-get: this installer is for Ubuntu (or Debian)" >&2
        return 3
    fi
    if ! command -v docker >/dev/null; then
        echo "error: Docker is not installed on $host: install it first" >&2
        return 3
    fi
    if ! command -v nvidia-smi >/dev/null; then
        echo "error: no nvidia-smi on $host: install the NVIDIA driver first" >&2
        return 3
    fi

    echo "==> 1/5 NVIDIA apt repository"
    if [ -s "$keyring" ] && [ -s "$list" ]; then
        echo "    already configured: $list"
    else
        if ! command -v curl >/dev/null || ! command -v gpg >/dev/null; then
            apt-get update
            apt-get install -y --no-install-recommends ca-certificates curl gnupg
        fi
        curl -fsSL "$repo/gpgkey" | gpg --batch --yes --dearmor -o "$keyring"
        curl -fsSL "$repo/stable/deb/nvidia-container-toolkit.list" \
            | sed "s#deb https://#deb [signed-by=$keyring] https://#g" >"$list.tmp"
        mv "$list.tmp" "$list"
    fi

    echo "==> 2/5 package nvidia-container-toolkit"
    if dpkg -s nvidia-container-toolkit 2>/dev/null | grep -q '^Status: install ok installed'; then
        echo "    already installed"
    else
        apt-get update
        apt-get install -y nvidia-container-toolkit
    fi

    echo "==> 3/5 Docker runtime 'nvidia'"
    local restart=no
    if grep -qs nvidia-container-runtime /etc/docker/daemon.json; then
        echo "    already in /etc/docker/daemon.json"
    else
        nvidia-ctk runtime configure --runtime=docker
        restart=yes
    fi

    echo "==> 4/5 restart Docker"
    if [ "$restart" = yes ]; then
        if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
            systemctl restart docker
        else
            service docker restart
        fi
        local tries=0
        until docker info >/dev/null 2>&1; do
            tries=$((tries + 1))
            if [ "$tries" -ge 60 ]; then
                echo "error: Docker did not come back within 60 s of its restart on $host" >&2
                return 1
            fi
            sleep 1
        done
    else
        echo "    not needed: Docker's configuration did not change"
    fi

    echo "==> 5/5 smoke check: docker run --rm --gpus all $smoke_image nvidia-smi"
    docker run --rm --gpus all "$smoke_image" nvidia-smi
    echo "==> $host: the NVIDIA Container Toolkit works"
}

main() {
    local host="" key="" smoke_image=ubuntu dry_run=no
    while [ $# -gt 0 ]; do
        case $1 in
            -h | --help)
                sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
                exit 0
                ;;
            -i)
                [ $# -ge 2 ] || die_usage "-i needs a key file"
                key=$2
                shift 2
                ;;
            --smoke-image)
                [ $# -ge 2 ] || die_usage "--smoke-image needs an image"
                smoke_image=$2
                shift 2
                ;;
            --smoke-image=*)
                smoke_image=${1#*=}
                shift
                ;;
            --dry-run)
                dry_run=yes
                shift
                ;;
            -*)
                die_usage "unknown option $1"
                ;;
            *)
                [ -z "$host" ] || die_usage "one host at a time (got $host and $1)"
                host=$1
                shift
                ;;
        esac
    done
    [ -n "$host" ] || die_usage "missing host"
    [ -n "$smoke_image" ] || die_usage "--smoke-image is empty"
    if [ -n "$key" ] && [ ! -r "$key" ]; then
        die_usage "cannot read key file $key"
    fi

    # ConnectTimeout: an unreachable host fails in seconds, not minutes.
    local ssh_opts=(-o ConnectTimeout=15)
    # IdentitiesOnly: offer only this key, not every key of the agent, which
    # can exhaust the server's MaxAuthTries before this one is tried.
    [ -z "$key" ] || ssh_opts+=(-i "$key" -o IdentitiesOnly=yes)
    # A terminal on the host lets sudo ask for the password, when we have one.
    [ ! -t 0 ] || ssh_opts+=(-t)

    local payload
    payload="$(declare -f remote_install)
remote_install $(printf '%q' "$smoke_image")"

    if [ "$dry_run" = yes ]; then
        echo "dry run: nothing is run. On $host, over 'ssh ${ssh_opts[*]} $host',"
        echo "as root (through sudo unless the SSH user is root), bash would run:"
        echo
        printf '%s\n' "$payload"
        exit 0
    fi

    # The payload travels base64-encoded: no quoting survives every login
    # shell, but [A-Za-z0-9+/=] needs none.
    local encoded remote_cmd
    encoded=$(printf '%s\n' "$payload" | base64 | tr -d '\n')
    remote_cmd="if [ \"\$(id -u)\" -eq 0 ]; then s=; else s=sudo; fi;"
    remote_cmd+=" \$s bash -c \"\$(echo $encoded | base64 -d)\""

    local rc=0
    # shellcheck disable=SC2029  # expanded here on purpose: the command is built locally
    ssh "${ssh_opts[@]}" "$host" "$remote_cmd" || rc=$?
    case $rc in
        0) ;;
        255) echo "install_ubuntu.sh: could not run ssh $host (exit 255): check the address, user and key" >&2 ;;
        *) echo "install_ubuntu.sh: installation failed on $host (exit $rc); see the output above" >&2 ;;
    esac
    [ "$rc" -eq 0 ] || exit 1
}

main "$@"
