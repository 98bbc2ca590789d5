#!/bin/sh
# Entrypoint of the Debian-based RabbitMQ test image: the official image's contract.
#
#   RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS / RABBITMQ_DEFAULT_VHOST
#       -> default_user / default_pass / default_vhost (conf.d/05-docker-env.conf)
#   RABBITMQ_ERLANG_COOKIE -> /var/lib/rabbitmq/.erlang.cookie
#   a mounted /etc/rabbitmq/rabbitmq.conf or /etc/rabbitmq/conf.d/*.conf is read as usual
#
# `rabbitmq-server` (the default command) runs in the foreground as user rabbitmq;
# any other command is run as given.
set -eu

if [ "${1:-rabbitmq-server}" != rabbitmq-server ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    conf=/etc/rabbitmq/conf.d/05-docker-env.conf
    : > "$conf"
    [ -z "${RABBITMQ_DEFAULT_USER:-}" ] || echo "default_user = $RABBITMQ_DEFAULT_USER" >> "$conf"
    [ -z "${RABBITMQ_DEFAULT_PASS:-}" ] || echo "default_pass = $RABBITMQ_DEFAULT_PASS" >> "$conf"
    [ -z "${RABBITMQ_DEFAULT_VHOST:-}" ] || echo "default_vhost = $RABBITMQ_DEFAULT_VHOST" >> "$conf"
    if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then
        # As in the official image: the default user is an administrator (management UI).
        {
            echo "default_user_tags.administrator = true"
            echo "default_permissions.configure = .*"
            echo "default_permissions.read = .*"
            echo "default_permissions.write = .*"
        } >> "$conf"
    fi
    if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then
        printf '%s' "$RABBITMQ_ERLANG_COOKIE" > /var/lib/rabbitmq/.erlang.cookie
        chmod 600 /var/lib/rabbitmq/.erlang.cookie
    fi
    # The node is rabbit@<hostname>; with host networking the hostname may not
    # resolve (the container's /etc/hosts is a copy of the host's).
    if ! getent hosts "$(hostname)" >/dev/null 2>&1; then
        echo "127.0.0.1 $(hostname)" >> /etc/hosts || true
    fi
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
    # The unwrapped script: Debian's /usr/sbin/rabbitmq-server would `su` and lose our env.
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
        /usr/lib/rabbitmq/bin/rabbitmq-server
fi
exec /usr/lib/rabbitmq/bin/rabbitmq-server
