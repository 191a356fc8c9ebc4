"""Twenty tests sharing the session's cluster, each with its own topic and group: what a
suite of an application's integration tests looks like (make bench times it)."""

import pytest
from kafka import KafkaConsumer, KafkaProducer


@pytest.mark.parametrize("n", range(20))
def test_each_test_gets_its_own_topic(odradek_bootstrap, odradek_topic, odradek_group, n):
    producer = KafkaProducer(bootstrap_servers=odradek_bootstrap, acks="all")
    producer.send(odradek_topic, f"hello {n}".encode()).get(timeout=30)
    producer.close()

    consumer = KafkaConsumer(odradek_topic, bootstrap_servers=odradek_bootstrap,
                             group_id=odradek_group, auto_offset_reset="earliest",
                             consumer_timeout_ms=15_000)
    values = []
    for message in consumer:
        values.append(message.value)
        break
    consumer.close()
    assert values == [f"hello {n}".encode()]
