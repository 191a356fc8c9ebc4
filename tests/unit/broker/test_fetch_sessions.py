"""Fetch sessions (KIP-227), both ends, as pure logic: epochs, full/incremental/close,
what an incremental answer holds, and the cache's eviction rules (Kafka's
FetchSessionCache)."""

from __future__ import annotations

import random
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from odradek.broker.fetch_sessions import (
    INT32_MAX,
    ContextKind,
    FetchContext,
    FetcherSession,
    FetchSessionCache,
    new_context,
    next_epoch,
)

T0 = 1_000_000
EVICT_MS = 120_000


def cache(slots: int = 1000) -> FetchSessionCache:
    return FetchSessionCache(slots, EVICT_MS, rng=random.Random(7))


def entry(index: int, hw: int = 10, records: bytes = b"", **more: Any) -> dict[str, Any]:
    return {"partition_index": index, "high_watermark": hw, "last_stable_offset": hw,
            "log_start_offset": 0, "records": records, **more}


def answer(ctx: FetchContext, c: FetchSessionCache, now: int = T0,
           **by_tp: dict[str, Any]) -> tuple[int, list[tuple[str, int]]]:
    """Finish ``ctx`` with an answer per partition (default: nothing new, HW 10)."""
    answers = [(tp, by_tp.get(f"{tp[0]}{tp[1]}", entry(tp[1]))) for tp, _ in ctx.partitions]
    sid, out = ctx.finish(c, now, answers)
    return sid, [tp for tp, _ in out]


def names(ctx: FetchContext) -> dict[Any, str | None]:
    """The topic name of each partition the request reads."""
    return {tp: ctx.topic_name(tp) for tp, _ in ctx.partitions}


def open_session(c: FetchSessionCache, n: int = 3, *, privileged: bool = False,
                 now: int = T0) -> int:
    ctx = new_context(c, now, 0, 0, privileged, [(("t", i), f"p{i}") for i in range(n)], [])
    assert ctx.kind is ContextKind.FULL
    sid, parts = answer(ctx, c, now)
    assert len(parts) == n
    return sid


def test_epochs_start_at_one_and_wrap_past_int32_max_to_one() -> None:
    assert next_epoch(0) == 1
    assert next_epoch(41) == 42
    assert next_epoch(INT32_MAX) == 1
    assert next_epoch(-1) == -1


def test_a_full_fetch_opens_a_session_whose_epochs_must_follow() -> None:
    c = cache()
    sid = open_session(c)
    assert 0 < sid < 2**31 and len(c) == 1 and c.total_partitions == 3
    ctx = new_context(c, T0, sid, 1, False, [], [])
    assert ctx.kind is ContextKind.INCREMENTAL
    assert [tp for tp, _ in ctx.partitions] == [("t", 0), ("t", 1), ("t", 2)]
    # Nothing changed: an empty answer, still in the session.
    assert answer(ctx, c) == (sid, [])
    # A replayed or skipped epoch is refused, and does not consume the next one.
    for bad in (1, 3, -2):
        wrong = new_context(c, T0, sid, bad, False, [], [])
        assert (wrong.kind, wrong.error) == (ContextKind.ERROR,
                                             ErrorCode.invalid_fetch_session_epoch)
    assert new_context(c, T0, sid, 2, False, [], []).kind is ContextKind.INCREMENTAL


def test_the_epoch_wraps_on_the_broker_too() -> None:
    c = cache()
    sid = open_session(c)
    c.sessions[sid].epoch = INT32_MAX
    assert new_context(c, T0, sid, INT32_MAX, False, [], []).kind is ContextKind.INCREMENTAL
    assert new_context(c, T0, sid, 1, False, [], []).kind is ContextKind.INCREMENTAL


def test_unknown_sessions_are_not_found() -> None:
    c = cache()
    for sid, epoch in ((12345, 1), (0, 1), (0, 7), (-5, 3)):
        ctx = new_context(c, T0, sid, epoch, False, [], [])
        assert (ctx.kind, ctx.error) == (ContextKind.ERROR, ErrorCode.fetch_session_id_not_found)


def test_sessionless_and_closing() -> None:
    c = cache()
    ctx = new_context(c, T0, 0, -1, False, [(("t", 0), "a"), (("t", 0), "b")], [])
    # Sessionless; a partition named twice is read once, with its last parameters.
    assert ctx.kind is ContextKind.SESSIONLESS and ctx.partitions == [(("t", 0), "b")]
    assert answer(ctx, c) == (0, [("t", 0)]) and len(c) == 0
    sid = open_session(c)
    # Epoch -1 with the session's id closes it (a client leaving).
    close = new_context(c, T0, sid, -1, False, [(("t", 0), "p")], [])
    assert close.kind is ContextKind.SESSIONLESS and len(c) == 0 and c.total_partitions == 0
    # Epoch 0 with an id closes that session and opens another.
    sid = open_session(c)
    again = new_context(c, T0, sid, 0, False, [(("t", 5), "p")], [])
    assert again.kind is ContextKind.FULL and sid not in c.sessions
    new_sid, _ = answer(again, c)
    assert new_sid not in (0, sid) and c.sessions[new_sid].epoch == 1


def test_incremental_requests_add_update_and_forget_partitions() -> None:
    c = cache()
    sid = open_session(c)
    ctx = new_context(c, T0, sid, 1, False, [(("t", 1), "p1-new"), (("u", 0), "u0")],
                      [("t", 0), ("t", 9)])
    assert ctx.partitions == [(("t", 1), "p1-new"), (("t", 2), "p2"), (("u", 0), "u0")]
    assert c.total_partitions == 3
    # The new partition is answered (its first answer), the others only when changed.
    assert answer(ctx, c) == (sid, [("u", 0)])
    # Named in both lists: forgotten, as in Kafka (the fetch data applies first).
    ctx = new_context(c, T0, sid, 2, False, [(("t", 2), "again")], [("t", 2)])
    assert [tp for tp, _ in ctx.partitions] == [("t", 1), ("u", 0)]
    # Everything forgotten: the session ends and the request is answered sessionless.
    ctx = new_context(c, T0, sid, 3, False, [], [("t", 1), ("u", 0)])
    assert ctx.kind is ContextKind.SESSIONLESS and len(c) == 0
    assert answer(ctx, c) == (0, [])


def test_an_incremental_answer_holds_only_partitions_with_something_to_say() -> None:
    c = cache()
    sid = open_session(c, 6)
    ctx = new_context(c, T0, sid, 1, False, [], [])
    got = answer(ctx, c, t0=entry(0, records=b"x"), t1=entry(1, hw=11),
                 t2={**entry(2), "log_start_offset": 4},
                 t3={**entry(3), "error_code": ErrorCode.not_leader_or_follower},
                 t4={**entry(4), "diverging_epoch": {"epoch": 2, "end_offset": 5}},
                 t5={**entry(5), "diverging_epoch": {"epoch": -1, "end_offset": -1}})
    assert got == (sid, [("t", 0), ("t", 1), ("t", 2), ("t", 3), ("t", 4)])
    # What was told is remembered; the error forgot t3's high watermark, so t3 comes back
    # once its error clears. t0 returned records: it moved to the end of the order.
    ctx = new_context(c, T0, sid, 2, False, [], [])
    assert [tp[1] for tp, _ in ctx.partitions] == [1, 2, 3, 4, 5, 0]
    assert answer(ctx, c, t1=entry(1, hw=11), t2={**entry(2), "log_start_offset": 4}) \
        == (sid, [("t", 3)])
    # A full fetch answers everything, changed or not.
    ctx = new_context(c, T0, sid, 0, False, [(("t", i), "p") for i in range(6)], [])
    assert answer(ctx, c)[1] == [("t", i) for i in range(6)]


def test_a_full_cache_answers_sessionless_until_a_session_may_be_evicted() -> None:
    c = cache(slots=2)
    a = open_session(c, 3)
    b = open_session(c, 3, now=T0 + 1000)
    # Both young and used: a consumer cannot evict either, whatever its size.
    assert open_session(c, 50, now=T0 + 2000) == 0
    assert set(c.sessions) == {a, b} and c.evictions == 0
    # Unused for longer than min.incremental.fetch.session.eviction.ms: the least
    # recently used goes, for anyone.
    new_context(c, T0 + EVICT_MS, b, 1, False, [], [])  # b used again
    c2 = open_session(c, 1, now=T0 + EVICT_MS + 1)
    assert c2 and a not in c.sessions and b in c.sessions and c.evictions == 1


def test_followers_evict_consumers_not_followers() -> None:
    c = cache(slots=2)
    consumer = open_session(c, 100)
    follower = open_session(c, 1, privileged=True)
    # A follower's session displaces a young consumer session, even a larger one...
    f2 = open_session(c, 1, privileged=True, now=T0 + 10)
    assert f2 and consumer not in c.sessions and follower in c.sessions
    # ...but not a young follower session, and a consumer displaces neither.
    assert open_session(c, 5, privileged=True, now=T0 + 20) == 0
    assert open_session(c, 500, now=T0 + 20) == 0


def test_older_sessions_give_way_to_larger_ones() -> None:
    c = cache(slots=2)
    small = open_session(c, 2)
    big = open_session(c, 10)
    # Both used after their eviction age (so both are evictable by all, by size), none stale.
    later = T0 + EVICT_MS + 1
    for sid in (small, big):
        assert new_context(c, later, sid, 1, False, [], []).kind is ContextKind.INCREMENTAL
    # A newcomer no larger than the smallest does not get in (its id, 0, orders first
    # among equals, as in Kafka); a larger one does.
    assert open_session(c, 1, now=later + 5) == 0
    assert open_session(c, 2, now=later + 5) == 0
    assert open_session(c, 3, now=later + 5) != 0
    assert small not in c.sessions and big in c.sessions


def test_zero_slots_means_no_sessions() -> None:
    c = cache(slots=0)
    assert open_session(c) == 0 and len(c) == 0


def test_the_fetcher_side_names_only_changes() -> None:
    s = FetcherSession()
    wanted = {("t", i): (i, 0) for i in range(200)}
    plan = s.build(wanted)
    assert (plan.session_id, plan.epoch, len(plan.send)) == (0, 0, 200)
    s.on_response(plan, ErrorCode.none, 77)
    plan = s.build(wanted)
    assert (plan.session_id, plan.epoch, plan.send, plan.forgotten) == (77, 1, {}, [])
    s.on_response(plan, ErrorCode.none, 77)
    moved = {**wanted, ("t", 3): (3, 5)}
    del moved[("t", 4)]
    plan = s.build(moved)
    assert (plan.epoch, plan.send, plan.forgotten) == (2, {("t", 3): (3, 5)}, [("t", 4)])
    s.on_response(plan, ErrorCode.none, 77)
    # A wrong epoch: a full fetch that closes the session and opens another.
    plan = s.build(moved)
    s.on_response(plan, ErrorCode.invalid_fetch_session_epoch, 0)
    plan = s.build(moved)
    assert (plan.session_id, plan.epoch, len(plan.send)) == (77, 0, 199)
    # An unknown session: a full fetch without it.
    s.on_response(plan, ErrorCode.none, 88)
    plan = s.build(moved)
    s.on_response(plan, ErrorCode.fetch_session_id_not_found, 0)
    assert s.build(moved).session_id == 0
    # A lost request (its fate unknown): full again, closing the old session.
    s.on_response(s.build(moved), ErrorCode.none, 99)
    s.build(moved)
    s.on_failure()
    plan = s.build(moved)
    assert (plan.session_id, plan.epoch, len(plan.send)) == (99, 0, 199)
    # The broker kept no session (its cache was full): full fetches, without an id.
    s.on_response(plan, ErrorCode.none, 0)
    plan = s.build(moved)
    assert (plan.session_id, plan.epoch, len(plan.send)) == (0, 0, 199)


# --- sessions with topic ids (Fetch v13+, KIP-516) ---------------------------------------

OLD, NEW, STRANGER = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)


def resolver(ids: dict[uuid.UUID, str]) -> Any:
    """The broker's image as a resolver of (topic id, index) keys; ``ids`` may change."""
    return lambda tp: ids.get(tp[0])


def test_a_session_opened_with_topic_ids_is_keyed_by_id() -> None:
    c = cache()
    ids = {OLD: "t"}
    ctx = new_context(c, T0, 0, 0, False, [((OLD, 0), "p0"), ((OLD, 1), "p1"),
                                           ((OLD, 1), "p1-last")], [],
                      uses_topic_ids=True, resolve=resolver(ids))
    assert ctx.kind is ContextKind.FULL
    assert ctx.partitions == [((OLD, 0), "p0"), ((OLD, 1), "p1-last")]
    assert [ctx.topic_name(tp) for tp, _ in ctx.partitions] == ["t", "t"]
    sid, _ = answer(ctx, c)
    assert c.sessions[sid].uses_topic_ids
    # Incremental: added, updated and forgotten by id.
    ctx = new_context(c, T0, sid, 1, False, [((OLD, 1), "p1-new"), ((OLD, 2), "p2")],
                      [(OLD, 0)], uses_topic_ids=True, resolve=resolver(ids))
    assert ctx.kind is ContextKind.INCREMENTAL
    assert ctx.partitions == [((OLD, 1), "p1-new"), ((OLD, 2), "p2")]
    assert [ctx.topic_name(tp) for tp, _ in ctx.partitions] == ["t", "t"]
    # Forgetting the topic's name forgets nothing: the session's keys are ids.
    ctx = new_context(c, T0, sid, 2, False, [], [("t", 1)], uses_topic_ids=True,
                      resolve=resolver(ids))
    assert [tp for tp, _ in ctx.partitions] == [(OLD, 1), (OLD, 2)]


def test_a_session_continues_only_with_requests_of_its_kind() -> None:
    """Kafka's FETCH_SESSION_TOPIC_ID_ERROR: a session opened by v13+ continued by v12- (or
    the reverse). The check follows the epoch check, and does not use up the epoch."""
    c = cache()
    by_id = new_context(c, T0, 0, 0, False, [((OLD, 0), "p")], [], uses_topic_ids=True,
                        resolve=resolver({OLD: "t"}))
    id_sid, _ = answer(by_id, c)
    name_sid = open_session(c)
    for sid, uses_ids in ((id_sid, False), (name_sid, True)):
        kwargs: dict[str, Any] = {"uses_topic_ids": uses_ids,
                                  "resolve": resolver({OLD: "t"}) if uses_ids else None}
        ctx = new_context(c, T0, sid, 1, False, [], [], **kwargs)
        assert (ctx.kind, ctx.error) == (ContextKind.ERROR,
                                         ErrorCode.fetch_session_topic_id_error)
        # A wrong epoch is reported first.
        ctx = new_context(c, T0, sid, 5, False, [], [], **kwargs)
        assert ctx.error == ErrorCode.invalid_fetch_session_epoch
        assert c.sessions[sid].epoch == 1
    assert new_context(c, T0, id_sid, 1, False, [], [], uses_topic_ids=True,
                       resolve=resolver({OLD: "t"})).kind is ContextKind.INCREMENTAL
    assert new_context(c, T0, name_sid, 1, False, [], []).kind is ContextKind.INCREMENTAL
    # A full request of either kind replaces a session of the other kind.
    ctx = new_context(c, T0, id_sid, 0, False, [(("t", 0), "p")], [])
    sid, _ = answer(ctx, c)
    assert id_sid not in c.sessions and not c.sessions[sid].uses_topic_ids


def test_an_unknown_topic_id_stays_in_the_session_until_it_resolves() -> None:
    c = cache()
    ids: dict[uuid.UUID, str] = {OLD: "t"}
    ctx = new_context(c, T0, 0, 0, False, [((OLD, 0), "p"), ((STRANGER, 0), "s")], [],
                      uses_topic_ids=True, resolve=resolver(ids))
    assert [ctx.topic_name(tp) for tp, _ in ctx.partitions] == ["t", None]
    sid, _ = answer(ctx, c, **{f"{STRANGER}0": {**entry(0, hw=-1),
                                               "error_code": ErrorCode.unknown_topic_id}})
    ctx = new_context(c, T0, sid, 1, False, [], [], uses_topic_ids=True,
                      resolve=resolver(ids))
    assert names(ctx) == {(OLD, 0): "t", (STRANGER, 0): None}
    # This broker's metadata learns the topic: the next request reads it by name.
    ids[STRANGER] = "s"
    ctx = new_context(c, T0, sid, 2, False, [], [], uses_topic_ids=True,
                      resolve=resolver(ids))
    assert names(ctx) == {(OLD, 0): "t", (STRANGER, 0): "s"}


def test_a_topic_recreated_under_its_name_is_another_partition_of_the_session() -> None:
    """The session keeps the name an id was resolved to: after the topic is deleted and
    created again (same name, new id) the old key still names "t", and the handler answers
    it INCONSISTENT_TOPIC_ID (the log now has the new id) until the fetcher forgets the old
    id and adds the new one, as Kafka's clients do."""
    c = cache()
    ids = {OLD: "t"}
    ctx = new_context(c, T0, 0, 0, False, [((OLD, 0), "p")], [], uses_topic_ids=True,
                      resolve=resolver(ids))
    sid, _ = answer(ctx, c)
    del ids[OLD]
    ids[NEW] = "t"
    ctx = new_context(c, T0, sid, 1, False, [], [], uses_topic_ids=True,
                      resolve=resolver(ids))
    assert names(ctx) == {(OLD, 0): "t"}
    # Both ids in one request: the new one is added, the old one forgotten.
    ctx = new_context(c, T0, sid, 2, False, [((NEW, 0), "p-new")], [(OLD, 0)],
                      uses_topic_ids=True, resolve=resolver(ids))
    assert ctx.partitions == [((NEW, 0), "p-new")] and names(ctx) == {(NEW, 0): "t"}
    assert answer(ctx, c) == (sid, [(NEW, 0)])  # its first answer
    # Until it forgets the old id, a fetcher has both in its session, apart.
    ctx = new_context(c, T0, sid, 3, False, [((OLD, 0), "p-old")], [],
                      uses_topic_ids=True, resolve=resolver(ids))
    assert [tp for tp, _ in ctx.partitions] == [(NEW, 0), (OLD, 0)]
    assert names(ctx) == {(NEW, 0): "t", (OLD, 0): None}


class Part:
    """A partition as fetch sessions see it: it tells its listeners of its next change."""

    def __init__(self) -> None:
        self.changes = 0
        self.listeners: dict[Any, Any] = {}

    def notify_once(self, listener: Any, key: Any) -> None:
        self.listeners[(id(listener), key)] = listener

    def forget(self, listener: Any, key: Any) -> None:
        self.listeners.pop((id(listener), key), None)

    def wake(self) -> None:
        self.changes += 1
        listeners, self.listeners = self.listeners, {}
        for (_, key), listener in listeners.items():
            listener.partition_changed(key)


def test_an_incremental_request_reads_only_named_unsettled_and_changed_partitions() -> None:
    c = cache()
    parts = {("t", i): Part() for i in range(12)}
    ctx = new_context(c, T0, 0, 0, True, [(tp, f"p{tp[1]}") for tp in parts], [])
    answers = [(tp, entry(tp[1])) for tp, _ in ctx.partitions]
    # All caught up but t3, whose answer left something to read; t5 changed since its read.
    caught = {tp: (p, p.changes) for tp, p in parts.items() if tp != ("t", 3)}
    parts[("t", 5)].wake()
    sid, _ = ctx.finish(c, T0, answers, caught)
    session = c.sessions[sid]
    assert session.unsettled == {("t", 3), ("t", 5)} and len(session.watch) == 10
    parts[("t", 9)].wake()
    parts[("t", 1)].wake()
    ctx = new_context(c, T0 + 500, sid, 1, True, [(("t", 7), "p7-new")], [])
    assert session.clock.at == (T0 + 500) / 1000  # held followers count this request
    # In the session's order; t1 and t9 told of a change, t7 named, t3 and t5 unsettled.
    assert [tp[1] for tp, _ in ctx.partitions] == [1, 3, 5, 7, 9]
    for tp, _ in ctx.partitions:
        ctx.read(tp, parts[tp])  # type: ignore[arg-type]
    parts[("t", 11)].wake()  # while the request waits: read too, in order
    assert [tp[1] for tp, _ in ctx.partitions] == [1, 3, 5, 7, 9, 11]
    answers = [(tp, entry(tp[1], records=b"x" if tp == ("t", 1) else b""))
               for tp, _ in ctx.partitions]
    caught = {tp: (parts[tp], parts[tp].changes) for tp, _ in ctx.partitions
              if tp != ("t", 9)}
    assert ctx.finish(c, T0 + 500, answers, caught)[1][0][0] == ("t", 1)
    assert session.unsettled == {("t", 9)}
    # t1 returned records: last in the order now.
    parts[("t", 1)].wake()
    parts[("t", 2)].wake()
    ctx = new_context(c, T0 + 1000, sid, 2, True, [], [])
    assert [tp[1] for tp, _ in ctx.partitions] == [2, 9, 1]
    # A forgotten partition is no longer watched; a closed session leaves nothing behind.
    new_context(c, T0 + 1500, sid, 3, True, [], [("t", 4)])
    assert not parts[("t", 4)].listeners
    c.remove(sid)
    assert not any(p.listeners for p in parts.values())
