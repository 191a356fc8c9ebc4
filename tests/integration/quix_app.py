"""A small Quix Streams application for test_stream_processor.py, run as its own process.

It keeps a running sum and count per message key in a RocksDB state store (which Quix
backs with a compacted changelog topic it creates on the cluster) and writes the aggregate
to the output topic under the same key. Input values are JSON ``{"n": <int>}``; output
values are JSON ``{"sum": <int>, "count": <int>}``.

    python tests/integration/quix_app.py --bootstrap H:P,... --group G --input IN \
        --output OUT --state-dir DIR [--guarantee at-least-once|exactly-once]

SIGTERM stops it cleanly: Quix finishes the record in hand, flushes the changelog and
output producer and commits the input offsets before it exits.

With ``--guarantee exactly-once`` each checkpoint's changelog and output records and input
offsets are committed in one Kafka transaction. The transactional id is fixed per consumer
group (one instance per group here), not Quix's default random one: a restarted instance
then fences its crashed predecessor and aborts its open transaction at once, instead of
leaving it to time out (librdkafka's default transaction.timeout.ms is a minute) while it
holds back every read_committed reader of the output and changelog.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from quixstreams import Application, State


def aggregate(value: dict[str, Any], state: State) -> dict[str, int]:
    total = int(state.get("sum", 0)) + int(value["n"])
    count = int(state.get("count", 0)) + 1
    state.set("sum", total)
    state.set("count", count)
    return {"sum": total, "count": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--guarantee", choices=["at-least-once", "exactly-once"],
                        default="at-least-once")
    args = parser.parse_args()
    producer_config = ({"transactional.id": f"{args.group}-quix-app"}
                       if args.guarantee == "exactly-once" else {})

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        processing_guarantee=args.guarantee,
        producer_extra_config=producer_config,
        # A SIGKILLed instance stays in the group until its session expires, and its
        # restart's rebalance waits for that: 6 s rather than librdkafka's 45 s.
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
        # The test waits for output; the default 5 s would only slow it down.
        commit_interval=0.5,
        loglevel="INFO",
    )
    # The test creates both topics with replication factor 3 beforehand: Quix would create
    # missing ones with its default of 1, and it derives the changelog topic's replication
    # factor (and partition count) from the input topic's as the broker reports them.
    input_topic = app.topic(args.input, value_deserializer="json", key_deserializer="str")
    output_topic = app.topic(args.output, value_serializer="json", key_serializer="str")

    sdf = app.dataframe(input_topic)
    sdf = sdf.apply(aggregate, stateful=True)
    sdf.to_topic(output_topic)
    logging.getLogger("quix_app").info("starting")
    app.run()


if __name__ == "__main__":
    main()
