# Cluster options for scripts/infrainit.sh, read with `infrainit.sh -f`.
# Written by infrainit.sh (without -f) from the options it was given; plain
# NAME="value" lines that mlframework parses and never executes. Secrets
# (broker and Flower passwords) are never stored here: they live in the
# ignored, mode-0600 file .mlframework/secrets.env.
HOSTS=""
SSH_KEY=""
REMOTE_PATH=""
PROJECT=""
MASTER=""
WORKERS=""
BROKER=""
