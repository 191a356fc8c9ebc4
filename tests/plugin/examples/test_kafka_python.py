"""kafka-python against a real cluster: the fixtures give a bootstrap string and names no
other test uses; the cluster starts once for the whole session."""

from kafka import KafkaConsumer, KafkaProducer


def test_produce_and_consume(odradek_cluster, odradek_bootstrap, odradek_topic, odradek_group):
    odradek_cluster.create_topic(odradek_topic, partitions=3)

    producer = KafkaProducer(bootstrap_servers=odradek_bootstrap, acks="all")
    for i in range(30):
        producer.send(odradek_topic, key=str(i % 3).encode(), value=f"order-{i}".encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(odradek_topic, bootstrap_servers=odradek_bootstrap,
                             group_id=odradek_group, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    seen = set()
    for message in consumer:
        seen.add(message.value)
        if len(seen) == 30:
            break
    consumer.commit()
    consumer.close()
    assert seen == {f"order-{i}".encode() for i in range(30)}


def test_read_to_end_sees_what_was_produced(odradek_cluster, odradek_topic):
    odradek_cluster.create_topic(odradek_topic)
    odradek_cluster.produce(odradek_topic, ["a", "b", "c"])

    records = odradek_cluster.read_to_end(odradek_topic)

    assert [r.value for r in records] == [b"a", b"b", b"c"]
    assert [r.offset for r in records] == [0, 1, 2]
