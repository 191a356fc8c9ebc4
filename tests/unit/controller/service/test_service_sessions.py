"""BrokerSessions: the lease rules, driven by a fake clock and hand-built images."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import pytest
from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataDelta, MetadataImage, MetadataRecord
from odradek.controller.metadata.records import (
    broker_controlled_shutdown_record,
    fence_broker_record,
    partition_change_record,
    partition_record,
    register_broker_record,
    topic_record,
    unfence_broker_record,
)
from odradek.controller.service import BrokerSessions, HeartbeatAction

TIMEOUT_MS = 9000
TID = uuid.UUID(int=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000


def commit(image: MetadataImage, records: Iterable[MetadataRecord]) -> MetadataImage:
    delta = MetadataDelta(image)
    for record in records:
        delta.replay(record, delta.offset + 1)
    return delta.apply()


def register(image: MetadataImage, broker_id: int, fenced: bool = True) -> MetadataImage:
    image = commit(image, [register_broker_record(broker_id, str(uuid.uuid4()))])
    if not fenced:
        image = commit(image, [unfence_broker_record(broker_id, image.brokers[broker_id].epoch)])
    return image


def fence(image: MetadataImage, broker_id: int) -> MetadataImage:
    return commit(image, [fence_broker_record(broker_id, image.brokers[broker_id].epoch)])


def unfence(image: MetadataImage, broker_id: int) -> MetadataImage:
    return commit(image, [unfence_broker_record(broker_id, image.brokers[broker_id].epoch)])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sessions(clock: Clock) -> BrokerSessions:
    return BrokerSessions(TIMEOUT_MS, clock)


def test_heartbeat_errors_are_kafka_codes(sessions: BrokerSessions) -> None:
    image = register(MetadataImage.EMPTY, 1)
    assert sessions.heartbeat(image, 2, 0, 0).error_code == ErrorCode.broker_id_not_registered
    stale = sessions.heartbeat(image, 1, image.brokers[1].epoch + 1, 10)
    assert stale.error_code == ErrorCode.stale_broker_epoch
    assert "register again" in (stale.error_message or "")
    assert stale.action is HeartbeatAction.NONE


def test_unfenced_once_caught_up_with_its_registration(sessions: BrokerSessions) -> None:
    image = register(register(MetadataImage.EMPTY, 2), 1)  # broker 1's epoch is offset 1
    epoch = image.brokers[1].epoch
    assert epoch == 1
    behind = sessions.heartbeat(image, 1, epoch, metadata_offset=0)
    assert (behind.action, behind.is_caught_up) == (HeartbeatAction.NONE, False)
    caught_up = sessions.heartbeat(image, 1, epoch, metadata_offset=1)
    assert (caught_up.action, caught_up.is_caught_up) == (HeartbeatAction.UNFENCE, True)
    image = unfence(image, 1)
    assert sessions.heartbeat(image, 1, epoch, metadata_offset=5).action is HeartbeatAction.NONE


def test_want_fence_keeps_or_makes_the_broker_fenced(sessions: BrokerSessions) -> None:
    image = register(MetadataImage.EMPTY, 1)
    epoch = image.brokers[1].epoch
    assert sessions.heartbeat(image, 1, epoch, 9, want_fence=True).action is HeartbeatAction.NONE
    image = unfence(image, 1)
    assert sessions.heartbeat(image, 1, epoch, 9, want_fence=True).action is HeartbeatAction.FENCE
    image = fence(image, 1)
    # Not wanting to be fenced any more is allowed (unlike shutting down).
    assert sessions.heartbeat(image, 1, epoch, 9).action is HeartbeatAction.UNFENCE


def test_session_expires_after_the_timeout_without_heartbeats(
    sessions: BrokerSessions, clock: Clock
) -> None:
    image = unfence(register(MetadataImage.EMPTY, 1), 1)
    epoch = image.brokers[1].epoch
    sessions.registered(1, epoch)
    for _ in range(5):  # heartbeats keep it alive well past one timeout
        clock.advance(TIMEOUT_MS - 1)
        assert sessions.expire(image) == []
        sessions.heartbeat(image, 1, epoch, 5)
    clock.advance(TIMEOUT_MS - 1)
    assert sessions.expire(image) == []
    assert sessions.next_deadline() == pytest.approx(clock.now + 0.001)
    clock.advance(1)
    assert sessions.expire(image) == [(1, epoch)]
    assert 1 not in sessions
    assert sessions.expire(image) == []  # reported once


def test_expiry_of_a_fenced_or_replaced_registration_fences_nothing(
    sessions: BrokerSessions, clock: Clock
) -> None:
    image = register(register(MetadataImage.EMPTY, 1), 2, fenced=False)
    sessions.registered(1, image.brokers[1].epoch)  # registered, never unfenced
    old_epoch = image.brokers[2].epoch
    sessions.registered(2, old_epoch)
    image = register(image, 2)  # a new process of broker 2 registered meanwhile
    clock.advance(TIMEOUT_MS)
    assert sessions.expire(image) == []
    assert 1 not in sessions and 2 not in sessions


def test_new_leader_gives_every_unfenced_broker_a_full_session(
    sessions: BrokerSessions, clock: Clock
) -> None:
    image = register(MetadataImage.EMPTY, 3)  # fenced: nothing to expire
    for broker_id in (1, 2):
        image = unfence(register(image, broker_id), broker_id)
    sessions.registered(1, image.brokers[1].epoch)
    clock.advance(TIMEOUT_MS - 10)  # broker 1's old session is almost over
    sessions.reset(image)
    assert 1 in sessions and 2 in sessions and 3 not in sessions
    clock.advance(TIMEOUT_MS - 1)
    assert sessions.expire(image) == []
    clock.advance(1)
    assert sorted(sessions.expire(image)) == [(1, image.brokers[1].epoch),
                                             (2, image.brokers[2].epoch)]


def test_track_unfenced_adds_missing_sessions_and_drops_stale_ones(
    sessions: BrokerSessions, clock: Clock
) -> None:
    image = unfence(register(MetadataImage.EMPTY, 1), 1)
    sessions.registered(1, image.brokers[1].epoch)
    clock.advance(TIMEOUT_MS / 2)
    image = unfence(register(image, 2), 2)  # unfenced without this controller's session
    sessions.track_unfenced(image)
    clock.advance(TIMEOUT_MS / 2)
    assert sessions.expire(image) == [(1, image.brokers[1].epoch)]  # 1's deadline unchanged
    clock.advance(TIMEOUT_MS / 2)
    assert sessions.expire(image) == [(2, image.brokers[2].epoch)]


def test_controlled_shutdown(sessions: BrokerSessions) -> None:
    image = unfence(register(unfence(register(MetadataImage.EMPTY, 1), 1), 2), 2)
    image = commit(image, [topic_record("t", TID),
                           partition_record(TID, 0, [2, 1], [2, 1], 2),
                           partition_record(TID, 1, [1, 2], [1, 2], 1)])
    epoch = image.brokers[2].epoch
    decision = sessions.heartbeat(image, 2, epoch, image.offset, want_shutdown=True)
    assert decision.action is HeartbeatAction.CONTROLLED_SHUTDOWN
    assert not sessions.should_shutdown(image, 2)  # still usable, still leading
    # The controlled shutdown moved leadership (as begin_controlled_shutdown's records do);
    # the broker stays unfenced.
    image = commit(image, [broker_controlled_shutdown_record(2, epoch),
                           partition_change_record(TID, 0, isr=[1], leader=1),
                           partition_change_record(TID, 1, isr=[1])])
    assert sessions.should_shutdown(image, 2)
    assert not sessions.should_shutdown(image, 1)
    # The flag sticks: nothing more to do, and a shutting-down broker is never unfenced
    # again, even without want_shutdown.
    again = sessions.heartbeat(image, 2, epoch, image.offset)
    assert again.action is HeartbeatAction.NONE
    assert sessions.should_shutdown(image, 2)
    image = commit(image, [fence_broker_record(2, epoch)])
    assert sessions.heartbeat(image, 2, epoch, image.offset).action is HeartbeatAction.NONE
    assert sessions.should_shutdown(image, 2)


def test_shutdown_waits_while_the_broker_still_leads(sessions: BrokerSessions) -> None:
    image = unfence(register(MetadataImage.EMPTY, 1), 1)
    epoch = image.brokers[1].epoch
    # Fenced, yet still named leader (the move has not committed yet): not done.
    image = commit(image, [topic_record("t", TID), partition_record(TID, 0, [1], [1], 1),
                           fence_broker_record(1, epoch)])
    sessions.heartbeat(image, 1, epoch, image.offset, want_shutdown=True)
    assert not sessions.should_shutdown(image, 1)
    image = commit(image, [partition_change_record(TID, 0, leader=-1)])
    assert sessions.should_shutdown(image, 1)


def test_a_new_registration_ends_the_shutdown(sessions: BrokerSessions) -> None:
    image = unfence(register(MetadataImage.EMPTY, 1), 1)
    sessions.heartbeat(image, 1, image.brokers[1].epoch, 5, want_shutdown=True)
    assert sessions.is_shutting_down(1)
    image = register(image, 1)
    sessions.registered(1, image.brokers[1].epoch)
    assert not sessions.is_shutting_down(1)
    decision = sessions.heartbeat(image, 1, image.brokers[1].epoch, image.offset)
    assert decision.action is HeartbeatAction.UNFENCE


def test_clear_forgets_everything(sessions: BrokerSessions) -> None:
    image = unfence(register(MetadataImage.EMPTY, 1), 1)
    sessions.reset(image)
    assert 1 in sessions
    sessions.clear()
    assert 1 not in sessions and sessions.next_deadline() is None


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="session.timeout"):
        BrokerSessions(0)


def test_a_closed_liveness_stream_cuts_the_session_to_the_grace(clock: Clock) -> None:
    sessions = BrokerSessions(TIMEOUT_MS, clock, disconnect_grace_ms=300)
    image = unfence(register(MetadataImage.EMPTY, 1), 1)
    epoch = image.brokers[1].epoch
    sessions.registered(1, epoch)
    assert sessions.liveness_opened(image, 1, epoch) == ErrorCode.none
    assert sessions.liveness_opened(image, 1, epoch + 1) == ErrorCode.stale_broker_epoch
    assert sessions.liveness_opened(image, 2, 0) == ErrorCode.broker_id_not_registered
    clock.advance(5000)
    assert sessions.liveness_closed(1, epoch)
    assert sessions.disconnected() == {1}
    # A heartbeat sent just before the process died extends the grace only.
    sessions.heartbeat(image, 1, epoch, 5)
    clock.advance(299)
    assert sessions.expire(image) == []
    clock.advance(2)
    assert sessions.expire(image) == [(1, epoch)]


def test_a_live_broker_reopens_its_stream_and_keeps_a_full_session(clock: Clock) -> None:
    sessions = BrokerSessions(TIMEOUT_MS, clock, disconnect_grace_ms=300)
    image = unfence(register(MetadataImage.EMPTY, 1), 1)
    epoch = image.brokers[1].epoch
    sessions.registered(1, epoch)
    sessions.liveness_opened(image, 1, epoch)
    sessions.liveness_opened(image, 1, epoch)  # a second stream (a reconnect overlapping)
    assert not sessions.liveness_closed(1, epoch)  # one is still open
    assert sessions.liveness_closed(1, epoch)
    clock.advance(100)
    sessions.liveness_opened(image, 1, epoch)
    assert sessions.disconnected() == set()
    clock.advance(TIMEOUT_MS - 200)
    sessions.heartbeat(image, 1, epoch, 5)
    clock.advance(TIMEOUT_MS - 1)
    assert sessions.expire(image) == []


def test_a_process_known_gone_stays_listed_until_its_session_timeout(clock: Clock) -> None:
    sessions = BrokerSessions(TIMEOUT_MS, clock, disconnect_grace_ms=300)
    image = unfence(register(MetadataImage.EMPTY, 1), 1)
    epoch = image.brokers[1].epoch
    sessions.registered(1, epoch)
    sessions.liveness_opened(image, 1, epoch)
    sessions.heartbeat(image, 1, epoch, 5)
    # Only a session whose stream ended can be known gone: a probe refused before that (or
    # of an older registration) says nothing about this process.
    assert not sessions.process_gone(1, epoch)
    assert sessions.liveness_closed(1, epoch)
    assert not sessions.process_gone(1, epoch - 1)
    clock.advance(10)
    assert sessions.process_gone(1, epoch)
    assert not sessions.process_gone(1, epoch)  # its leaderships are moved once
    assert sessions.known_gone() == {1}
    # Listed (its leaderships already moved) until its session would have ended, as Kafka
    # lists a dead broker; neither a late heartbeat nor a stream opened meanwhile keeps it.
    sessions.heartbeat(image, 1, epoch, 5)
    assert sessions.liveness_opened(image, 1, epoch) == ErrorCode.none
    clock.advance(TIMEOUT_MS - 11)
    assert sessions.expire(image) == []
    clock.advance(2)
    assert sessions.expire(image) == [(1, epoch)]
    assert sessions.fenced_by_reason == {"process_gone": 1}
    # A new process of the broker ends a gone session at once (it is counted as fenced).
    sessions.registered(1, epoch)
    sessions.liveness_opened(image, 1, epoch)
    assert sessions.take_gone(1) is None  # alive
    assert sessions.liveness_closed(1, epoch) and sessions.process_gone(1, epoch)
    assert sessions.take_gone(1) == epoch
    assert sessions.fenced_by_reason == {"process_gone": 2} and sessions.known_gone() == set()
    # A broker that reopened its stream before the answer came is alive.
    sessions.registered(1, epoch)
    sessions.liveness_opened(image, 1, epoch)
    assert sessions.liveness_closed(1, epoch)
    sessions.liveness_opened(image, 1, epoch)
    assert not sessions.process_gone(1, epoch)
    clock.advance(TIMEOUT_MS - 1)
    assert sessions.expire(image) == []
    # A broker stopping after its own controlled shutdown has nothing left to move.
    sessions.heartbeat(image, 1, epoch, 5, want_shutdown=True)
    assert sessions.liveness_closed(1, epoch)
    assert not sessions.process_gone(1, epoch)


def test_without_a_grace_or_a_stream_only_the_timeout_fences(clock: Clock) -> None:
    image = unfence(register(MetadataImage.EMPTY, 1), 1)
    epoch = image.brokers[1].epoch
    off = BrokerSessions(TIMEOUT_MS, clock, disconnect_grace_ms=0)
    off.registered(1, epoch)
    off.liveness_opened(image, 1, epoch)
    assert not off.liveness_closed(1, epoch)
    clock.advance(TIMEOUT_MS - 1)
    assert off.expire(image) == []
    # A stream closing under a controlled shutdown is the process stopping as it said: it
    # is fenced after the grace (clients meanwhile learn the new leaders while it is still
    # listed), at once without one, and that is no failure.
    for grace_ms in (0, 300):
        sessions = BrokerSessions(TIMEOUT_MS, clock, disconnect_grace_ms=grace_ms)
        sessions.registered(1, epoch)
        sessions.liveness_opened(image, 1, epoch)
        sessions.heartbeat(image, 1, epoch, 5, want_shutdown=True)
        assert sessions.liveness_closed(1, epoch)
        if grace_ms:
            assert sessions.expire(image) == []
            clock.advance(grace_ms)
        assert sessions.expire(image) == [(1, epoch)] and sessions.fenced_by_reason == {}
    # Closing a stream of an older registration changes nothing.
    assert not sessions.liveness_closed(1, epoch - 1)


def test_heartbeat_gaps_and_fencing_reasons_are_recorded(clock: Clock) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from odradek.controller.service.metrics import SessionsCollector

    sessions = BrokerSessions(TIMEOUT_MS, clock, disconnect_grace_ms=300)
    image = unfence(register(unfence(register(MetadataImage.EMPTY, 1), 1), 2), 2)
    e1, e2 = image.brokers[1].epoch, image.brokers[2].epoch
    sessions.heartbeat(image, 1, e1, 5)  # the first heartbeat of a session: no gap yet
    for gap_ms in (500, 500, 1200):
        clock.advance(gap_ms)
        sessions.heartbeat(image, 1, e1, 5)
    assert sessions.gaps.longest == {1: pytest.approx(1.2)}
    assert sessions.gaps.buckets[1][1] == 2  # <= 0.5 s
    assert sessions.gaps.buckets[1][3] == 2  # <= 1.0 s: the 1.2 s gap is above it
    # Broker 2 goes silent; broker 1's process is gone (its stream closed).
    sessions.heartbeat(image, 2, e2, 5)
    sessions.liveness_opened(image, 1, e1)
    assert sessions.liveness_closed(1, e1)
    clock.advance(TIMEOUT_MS + 1)
    assert sorted(sessions.expire(image)) == [(1, e1), (2, e2)]
    assert sessions.fenced_by_reason == {"process_gone": 1, "session_timeout": 1}

    registry = CollectorRegistry()
    registry.register(SessionsCollector(sessions))
    text = generate_latest(registry).decode()
    assert 'odradek_controller_broker_heartbeat_gap_seconds_bucket{broker="1",le="1.0"} 2.0' \
        in text
    assert 'odradek_controller_broker_heartbeat_gap_seconds_count{broker="1"} 3.0' in text
    assert 'odradek_controller_broker_heartbeat_gap_max_seconds{broker="1"} 1.2' in text
    assert 'odradek_controller_brokers_fenced_total{reason="process_gone"} 1.0' in text
    assert 'odradek_controller_brokers_fenced_total{reason="session_timeout"} 1.0' in text


def test_a_new_controller_cuts_the_session_of_a_broker_whose_node_it_lost(
        clock: Clock) -> None:
    # In a combined node the dead active controller's broker died with it: the new
    # controller, which lost its connection to that node, gives its broker two heartbeat
    # intervals to show up instead of a whole session timeout.
    sessions = BrokerSessions(TIMEOUT_MS, clock, disconnect_grace_ms=300)
    image = unfence(register(unfence(register(MetadataImage.EMPTY, 1), 1), 2), 2)
    e1, e2 = image.brokers[1].epoch, image.brokers[2].epoch
    sessions.reset(image, suspects=frozenset({1}), suspect_grace=1.0)
    clock.advance(999)
    assert sessions.expire(image) == []
    clock.advance(2)
    assert sessions.expire(image) == [(1, e1)]
    assert sessions.fenced_by_reason == {"process_gone": 1}

    # A suspect that is alive after all: its heartbeats keep it, its stream makes it whole.
    sessions.reset(image, suspects=frozenset({2}), suspect_grace=1.0)
    for _ in range(4):
        clock.advance(500)
        sessions.heartbeat(image, 2, e2, 5)
        assert sessions.expire(image) == []
    sessions.liveness_opened(image, 2, e2)
    clock.advance(TIMEOUT_MS - 1)
    sessions.heartbeat(image, 2, e2, 5)
    clock.advance(TIMEOUT_MS - 1)
    assert (2, e2) not in sessions.expire(image)  # broker 1, silent all along, goes
