"""What an application does first: create a topic, then write to it with acks=all. Each
flow raises unless both finish within LIMIT_S seconds."""

from __future__ import annotations

from collections.abc import Callable

LIMIT_S = 15.0


def confluent_flow(bootstrap: str, topic: str, rf: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, 1, rf)], operation_timeout=LIMIT_S,
                                  request_timeout=LIMIT_S)
    futures[topic].result(timeout=LIMIT_S)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "message.timeout.ms": int(LIMIT_S * 1000)})
    delivered: list[object] = []
    producer.produce(topic, b"first", on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(LIMIT_S)
    assert delivered == [None], delivered


def kafka_python_flow(bootstrap: str, topic: str, rf: int) -> None:
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    servers = bootstrap.split(",")
    admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=int(LIMIT_S * 1000))
    try:
        admin.create_topics([NewTopic(topic, 1, rf)], timeout_ms=int(LIMIT_S * 1000))
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    try:
        producer.send(topic, b"first").get(timeout=LIMIT_S)
    finally:
        producer.close()


FIRST_WRITE_FLOWS: dict[str, Callable[[str, str, int], None]] = {
    "confluent-kafka": confluent_flow, "kafka-python": kafka_python_flow}
