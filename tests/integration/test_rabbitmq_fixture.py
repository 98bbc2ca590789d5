"""The private broker fixture itself: real AMQP against testbed/rabbitmq.py's node."""

from __future__ import annotations

import amqp.exceptions
import kombu
import pytest

from testbed.rabbitmq import RabbitMQNode


def _roundtrip_queue(name: str, durable: bool = False) -> kombu.Queue:
    return kombu.Queue(
        name,
        exchange=kombu.Exchange(name, type="direct", durable=durable),
        routing_key=name,
        durable=durable,
        auto_delete=False,
    )


def test_publish_and_consume_with_generated_credentials(rabbitmq: RabbitMQNode) -> None:
    queue = _roundtrip_queue("fixture-roundtrip")
    with kombu.Connection(rabbitmq.url, connect_timeout=10) as conn:
        conn.connect()
        conn.Producer().publish(
            {"n": 1}, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue], serializer="json"
        )
        with conn.SimpleQueue(queue) as sq:
            message = sq.get(block=True, timeout=10)
            message.ack()
    assert message.payload == {"n": 1}
    assert rabbitmq.url.startswith(f"amqp://{rabbitmq.user}:")
    assert rabbitmq.url.endswith(f"@127.0.0.1:{rabbitmq.port}/{rabbitmq.vhost}")


def test_guest_is_refused(rabbitmq: RabbitMQNode) -> None:
    guest = kombu.Connection(f"amqp://guest:guest@127.0.0.1:{rabbitmq.port}//", connect_timeout=10)
    with pytest.raises(amqp.exceptions.AccessRefused):
        guest.connect()
    guest.release()


def test_restart_keeps_durable_persistent_message(rabbitmq: RabbitMQNode) -> None:
    queue = _roundtrip_queue("fixture-durable", durable=True)
    port, url = rabbitmq.port, rabbitmq.url
    with kombu.Connection(url, connect_timeout=10) as conn:
        conn.Producer().publish(
            {"kept": True},
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            delivery_mode="persistent",
            serializer="json",
        )

    rabbitmq.restart()

    assert rabbitmq.is_running() and (rabbitmq.port, rabbitmq.url) == (port, url)
    with kombu.Connection(url, connect_timeout=10) as conn, conn.SimpleQueue(queue) as sq:
        message = sq.get(block=True, timeout=10)
        message.ack()
    assert message.payload == {"kept": True}


def test_paused_node_stops_answering_until_resumed(rabbitmq: RabbitMQNode) -> None:
    rabbitmq.pause()
    try:
        with pytest.raises(OSError):  # TCP is accepted, the AMQP handshake never comes
            kombu.Connection(rabbitmq.url, connect_timeout=1).connect()
    finally:
        rabbitmq.resume()
    with kombu.Connection(rabbitmq.url, connect_timeout=10) as conn:
        conn.connect()
        assert conn.connected
