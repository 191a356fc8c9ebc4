"""A FastStream application against a real cluster (FastStream's TestKafkaBroker replaces
the broker with an in-memory fake; here the messages go through Kafka)."""

import asyncio

from faststream.kafka import KafkaBroker


def make_app(bootstrap, topic, group, processed):
    """The application under test: doubles every number it is sent."""
    broker = KafkaBroker(bootstrap)

    @broker.subscriber(topic, group_id=group, auto_offset_reset="earliest")
    async def handle(number: int) -> None:
        processed.append(number * 2)

    return broker


async def run(bootstrap, topic, group):
    processed = []
    broker = make_app(bootstrap, topic, group, processed)
    async with broker:
        await broker.start()
        for n in range(5):
            await broker.publish(n, topic)
        async with asyncio.timeout(30):
            while len(processed) < 5:
                await asyncio.sleep(0.05)
    return processed


def test_application_processes_every_message(odradek_cluster, odradek_bootstrap,
                                             odradek_topic, odradek_group):
    odradek_cluster.create_topic(odradek_topic)

    processed = asyncio.run(run(odradek_bootstrap, odradek_topic, odradek_group))

    assert sorted(processed) == [0, 2, 4, 6, 8]
