"""A consume-transform-produce loop with transactions (confluent-kafka), run as its own
process by test_exactly_once.py, which kills it with SIGKILL and starts it again.

Each input record ``<id>`` becomes the output record ``<id>:out`` under the same key; the
output records and the input offsets are committed in one transaction
(``send_offsets_to_transaction``), so however often the process dies, a read_committed
reader of the output sees each input record's result exactly once.

    python tests/integration/eos_app.py --bootstrap H:P,... --group G --input IN \
        --output OUT --transactional-id TID
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def rewind(consumer: Consumer) -> None:
    """Back to the committed offsets: what the aborted transaction read is read again."""
    assignment = consumer.assignment()
    if not assignment:
        return
    for tp in consumer.committed(assignment, timeout=30):
        consumer.seek(TopicPartition(tp.topic, tp.partition,
                                     tp.offset if tp.offset >= 0 else 0))


STUCK_S = 15


def stuck() -> None:
    step(f"transaction stuck for {STUCK_S} s: exiting")
    os._exit(3)


def step(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("bootstrap", "group", "input", "output", "transactional-id"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap, "group.id": args.group,
        "isolation.level": "read_committed", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
        # Static membership (KIP-345): a restarted instance takes its partitions back at
        # once instead of waiting for the killed one's session to expire.
        "group.instance.id": f"{args.transactional_id}-instance",
    })
    producer = Producer({
        "bootstrap.servers": args.bootstrap, "transactional.id": args.transactional_id,
        "transaction.timeout.ms": 10000, "linger.ms": 5,
        **({"debug": "eos"} if os.environ.get("EOS_APP_DEBUG") else {}),
    })
    producer.init_transactions(60)
    consumer.subscribe([args.input])
    print("ready", flush=True)
    idle_since = time.monotonic()
    while True:
        records = [m for m in consumer.consume(200, timeout=0.5) if m.error() is None]
        if not records:
            if time.monotonic() - idle_since > 5:
                # What a stalled run's log should show: where the consumer stands.
                idle_since = time.monotonic()
                positions = consumer.position(consumer.assignment())
                print("idle at " + ", ".join(f"{tp.partition}@{tp.offset}" for tp in positions),
                      flush=True)
            continue
        idle_since = time.monotonic()
        # librdkafka's send_offsets_to_transaction can block past its timeout, forever,
        # when the group coordinator it cached died (librdkafka issues 5456 and 5511; the
        # same against Apache Kafka): a stuck transaction ends the process, as a
        # supervisor would, and the next instance recovers.
        watchdog = threading.Timer(STUCK_S, stuck)
        watchdog.start()
        try:
            producer.begin_transaction()
            step(f"begin {len(records)}")
            for m in records:
                producer.produce(args.output, key=m.key(), value=m.value() + b":out")
            # "Processing" time inside the transaction: a kill often lands mid-transaction,
            # with output written but not committed.
            producer.flush(10)
            step("flushed")
            time.sleep(0.1)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()),
                consumer.consumer_group_metadata(), 10)
            step("offsets sent")
            producer.commit_transaction(15)
            print(f"committed {len(records)}", flush=True)
        except KafkaException as e:
            err = e.args[0]
            if err.fatal():
                print(f"fatal: {err}", file=sys.stderr, flush=True)
                return 1
            print(f"aborting: {err}", file=sys.stderr, flush=True)
            if err.txn_requires_abort():
                producer.abort_transaction(60)
            rewind(consumer)
        finally:
            watchdog.cancel()


if __name__ == "__main__":
    sys.exit(main())
