"""confluent-kafka (librdkafka) with the same fixtures."""

from confluent_kafka import Consumer, Producer


def test_produce_and_consume(odradek_cluster, odradek_bootstrap, odradek_topic, odradek_group):
    odradek_cluster.create_topic(odradek_topic, partitions=2)

    producer = Producer({"bootstrap.servers": odradek_bootstrap, "enable.idempotence": True})
    for i in range(20):
        producer.produce(odradek_topic, value=f"event-{i}".encode())
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": odradek_bootstrap, "group.id": odradek_group,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([odradek_topic])
    seen = set()
    try:
        for _ in range(300):
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                seen.add(message.value())
            if len(seen) == 20:
                break
    finally:
        consumer.close()
    assert seen == {f"event-{i}".encode() for i in range(20)}
