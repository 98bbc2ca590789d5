"""Real servers for the tests and the bench: a private RabbitMQ node, test hosts, the user's scripts run against them.

Neither part of the package nor of the test suite, so that both ``tests/`` and
``bench/`` may import it: ``rabbitmq`` (a private broker node on this machine),
``testhosts`` (hosts in network namespaces with their own sshd and dockerd;
root), ``scripted`` (``scripts/*.sh`` run in a copy of the repository).
"""
