"""aiokafka: plain asyncio.run() in a test (pytest-asyncio works as well)."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def round_trip(bootstrap, topic, group):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"msg-{i}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        seen = []
        async with asyncio.timeout(30):
            async for message in consumer:
                seen.append(message.value)
                if len(seen) == 10:
                    break
        return seen
    finally:
        await consumer.stop()


def test_round_trip(odradek_cluster, odradek_bootstrap, odradek_topic, odradek_group):
    odradek_cluster.create_topic(odradek_topic)

    seen = asyncio.run(round_trip(odradek_bootstrap, odradek_topic, odradek_group))

    assert seen == [f"msg-{i}".encode() for i in range(10)]
