"""Fetch sessions (KIP-227): both ends of incremental fetch requests, pure logic.

A fetcher that reads many partitions would otherwise name every partition in every Fetch
and get every partition back, even when nothing changed. With a session the broker
remembers the partitions and their fetch positions; each further request names only the
partitions whose position changed (and the ones to forget), and the answer holds only the
partitions with something to say.

``FetchSessionCache`` and ``new_context`` are the broker's side, with the rules of Kafka's
``FetchSessionCache``/``FetchManager``: request epoch -1 is a full fetch without a session
(closing ``session_id`` if one is given), 0 a full fetch that opens a session (closing
``session_id`` if given), > 0 the next request of an existing session. The cache is bounded
(``max.incremental.fetch.session.cache.slots``); a full cache admits a new session only by
evicting one that has been idle for ``min.incremental.fetch.session.eviction.ms``, or a less
valuable one (followers' sessions are privileged over consumers', larger over smaller,
and a session is protected for that long after its creation). A full fetch that finds no
room is answered as a sessionless one (session id 0), as Kafka does.

Fetch v13 and later name topics by id (KIP-516): a session opened by such a request keys its
partitions by (topic id, partition), and one opened by an older request by (topic name,
partition); a request of the other kind gets FETCH_SESSION_TOPIC_ID_ERROR, as in Kafka. A
partition keyed by id keeps the topic name it was first resolved to (or none: an id the
broker did not know, tried again on each request until it resolves), so a topic deleted
and created again under the same name does not silently continue the old one: the fetcher
must forget the old id and add the new one.

An incremental request reads only the partitions it names, those whose last answer did
not leave the fetcher caught up ("unsettled"), and those that changed since they were read:
each partition read tells its session of its next change (broker/partition_watch.py), so
an idle session of thousands of partitions costs nothing per partition. A follower caught
up on a partition it is in the ISR of is "held" there (ReplicaState.hold_follower): the
session's clock, set at each request, is its caught-up time until the leader appends.
Where a consumer is caught up depends on its isolation level (the last stable offset for
READ_COMMITTED, the high watermark otherwise): a request of another level than the
session's last reads every partition of it again.

``FetcherSession`` is the fetcher's side (Kafka's ``FetchSessionHandler``), used by the
follower fetchers.

No I/O and no clock: callers pass ``now_ms``.
"""

from __future__ import annotations

import contextlib
import enum
import random
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from odradek.broker.partition_watch import PartitionWatch, Watched
from odradek.broker.replica_state import FetchClock

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0  # a full request that opens a session
FINAL_EPOCH = -1  # a full request without a session (closes the one named, if any)
INT32_MAX = 2**31 - 1

# How a session names a partition: (topic name, index) before Fetch v13, (topic id, index)
# from v13 on (None: the null id, which no topic has).
PartitionKey = tuple[str | uuid.UUID | None, int]
# Resolves a (topic id, index) key to its topic's name, None for an unknown id.
Resolver = Callable[[PartitionKey], str | None]


def next_epoch(epoch: int) -> int:
    """The epoch after ``epoch``: it wraps from INT32_MAX to 1 (0 means "new session")."""
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch == INT32_MAX else epoch + 1


@dataclass(slots=True)
class CachedPartition:
    """One partition of a session: the fetcher's last request parameters for it, and what
    the last answer told the fetcher (an incremental answer repeats only changes)."""

    params: Any  # the request's partition entry (fetch_offset, current_leader_epoch, ...)
    # The topic's name when the key is a topic id: resolved once and then kept (Kafka's
    # maybeResolveUnknownName), None while the id is unknown.
    topic: str | None = None
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    # Its place in the session's order (partitions that returned data move to the end).
    order: int = 0

    def must_respond(self, entry: Mapping[str, Any], update: bool) -> bool:
        """Whether the answer ``entry`` of this partition has something the fetcher does not
        know yet; ``update`` records it as known."""
        respond = bool(entry.get("records"))
        for key in ("high_watermark", "last_stable_offset", "log_start_offset"):
            value = entry.get(key, -1)
            if getattr(self, key) != value:
                respond = True
                if update:
                    setattr(self, key, value)
        if entry.get("error_code", ErrorCode.none) != ErrorCode.none:
            # Forget the high watermark: when the error clears, the partition is sent again.
            if update:
                self.high_watermark = -1
            respond = True
        diverging = entry.get("diverging_epoch")
        if diverging is not None and (diverging["epoch"] >= 0 or diverging["end_offset"] >= 0):
            respond = True
        if entry.get("preferred_read_replica", -1) >= 0:
            respond = True
        return respond


@dataclass(eq=False, slots=True)
class FetchSession:
    id: int
    privileged: bool  # a follower's session
    partitions: dict[PartitionKey, CachedPartition]
    creation_ms: int
    last_used_ms: int
    epoch: int  # the epoch the next request must carry
    cached_size: int = -1  # partitions when last touched (the eviction order uses it)
    uses_topic_ids: bool = False  # opened by Fetch v13+: keys are (topic id, index)
    # Partitions read and unchanged since, as the partitions tell (the rest is read).
    watch: PartitionWatch[PartitionKey] = field(default_factory=PartitionWatch)
    # Partitions whose last answer did not leave the fetcher caught up: read each time.
    unsettled: set[PartitionKey] = field(default_factory=set)
    # When its latest request came (a follower's caught-up time on held partitions).
    clock: FetchClock = field(default_factory=FetchClock)
    next_order: int = 0
    replica_id: int = -1  # the follower's broker id (privileged sessions)
    # Set by ``FetchSessionCache.nudge``: the parked request answers now, so that the
    # follower's next request can name the partitions it lacks.
    nudged: bool = False
    # The isolation level of its latest request: "caught up" was judged by it.
    read_committed: bool = False

    def place_last(self, tp: PartitionKey, cached: CachedPartition) -> None:
        cached.order = self.next_order
        self.next_order += 1
        self.partitions[tp] = cached

    def evictable_key(self) -> tuple[bool, int, int]:
        # Kafka's EvictableKey order: consumers before followers, small before large.
        return (self.privileged, self.cached_size, self.id)

    def update(self, fetch_data: Iterable[tuple[PartitionKey, Any]],
               forgotten: Iterable[PartitionKey], resolve: Resolver | None) -> None:
        """An incremental request: named partitions are added or get new parameters, then
        forgotten ones leave (a partition named in both leaves, as in Kafka). A partition
        already held keeps its topic name."""
        for tp, params in fetch_data:
            cached = self.partitions.get(tp)
            if cached is None:
                self.place_last(tp, CachedPartition(
                    params, resolve(tp) if resolve is not None else None))
                self.unsettled.add(tp)
            else:
                cached.params = params
        for tp in forgotten:
            if self.partitions.pop(tp, None) is not None:
                self.watch.unwatch(tp)
                self.unsettled.discard(tp)

    def close(self) -> None:
        self.watch.close()


class FetchSessionCache:
    """The broker's sessions, bounded, with Kafka's eviction rules."""

    def __init__(self, max_entries: int, eviction_ms: int, *,
                 rng: random.Random | None = None,
                 on_evict: Callable[[], None] | None = None) -> None:
        self.max_entries = max_entries
        self.eviction_ms = eviction_ms
        self._rng = rng or random.Random()
        self._on_evict = on_evict
        self.sessions: dict[int, FetchSession] = {}
        self.total_partitions = 0
        self.evictions = 0
        # The two "evictable" sets of Kafka's cache, kept as sets and searched with min():
        # the cache is small (1000 slots) and a search happens only when it is full.
        self._evictable_by_all: set[int] = set()
        self._evictable_by_privileged: set[int] = set()
        self._by_replica: dict[int, set[int]] = {}  # follower id -> its session ids
        # Wake-ups of followers' parked fetches that have no session to nudge (a full
        # fetch opens its session only when it is answered; a sessionless one has none):
        # follower id -> callbacks. A new fetcher's first request is one of these.
        self._parked_without_session: dict[int, set[Callable[[], None]]] = {}

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, session_id: int) -> FetchSession | None:
        return self.sessions.get(session_id)

    def _new_id(self) -> int:
        while True:
            sid = self._rng.randint(1, INT32_MAX - 1)
            if sid not in self.sessions:
                return sid

    def maybe_create(self, now_ms: int, privileged: bool,
                     partitions: dict[PartitionKey, CachedPartition],
                     uses_topic_ids: bool = False,
                     clock: FetchClock | None = None,
                     replica_id: int = -1) -> FetchSession | None:
        """A new session holding ``partitions`` (in their order); None when the cache has
        no room."""
        if len(self.sessions) >= self.max_entries and not self._try_evict(
                privileged, (privileged, len(partitions), 0), now_ms):
            return None
        session = FetchSession(self._new_id(), privileged, {}, now_ms, now_ms,
                               next_epoch(INITIAL_EPOCH), uses_topic_ids=uses_topic_ids,
                               clock=clock or FetchClock(now_ms / 1000),
                               replica_id=replica_id if privileged else -1)
        for tp, cached in partitions.items():
            session.place_last(tp, cached)
        self.sessions[session.id] = session
        if session.replica_id >= 0:
            self._by_replica.setdefault(session.replica_id, set()).add(session.id)
        self.touch(session, now_ms)
        return session

    def _try_evict(self, privileged: bool, key: tuple[bool, int, int], now_ms: int) -> bool:
        if not self.sessions:
            return False
        # Kafka's lastUsed order: least recently used first, ties by id.
        stale = min(self.sessions.values(), key=lambda s: (s.last_used_ms, s.id))
        if now_ms - stale.last_used_ms > self.eviction_ms:
            self._evict(stale)
            return True
        ids = self._evictable_by_privileged if privileged else self._evictable_by_all
        if not ids:
            return False
        victim = min((self.sessions[i] for i in ids), key=FetchSession.evictable_key)
        if key < victim.evictable_key():
            return False
        self._evict(victim)
        return True

    def _evict(self, session: FetchSession) -> None:
        self.remove(session.id)
        self.evictions += 1
        if self._on_evict is not None:
            self._on_evict()

    def remove(self, session_id: int) -> FetchSession | None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            session.close()
            ids = self._by_replica.get(session.replica_id)
            if ids is not None:
                ids.discard(session_id)
                if not ids:
                    del self._by_replica[session.replica_id]
            self._evictable_by_all.discard(session_id)
            self._evictable_by_privileged.discard(session_id)
            self.total_partitions -= max(0, session.cached_size)
        return session

    def nudge(self, replica_ids: Iterable[int]) -> None:
        """Answer the parked requests of these followers' sessions now: a partition they
        must replicate (this node became its leader, and a write waits for them) is not in
        their sessions yet, and would otherwise wait for ``replica.fetch.wait.max.ms``
        until their next request names it (their fetchers add it only between requests)."""
        for replica in replica_ids:
            for session_id in self._by_replica.get(replica, ()):
                session = self.sessions[session_id]
                session.nudged = True
                if session.watch.on_change is not None:
                    session.watch.on_change()
            for wake in list(self._parked_without_session.get(replica, ())):
                wake()

    @contextlib.contextmanager
    def parked_without_session(self, replica_id: int, wake: Callable[[], None]
                               ) -> Iterator[None]:
        """While a follower's fetch without a session is parked, ``nudge`` of that
        follower calls ``wake``."""
        wakes = self._parked_without_session.setdefault(replica_id, set())
        wakes.add(wake)
        try:
            yield
        finally:
            wakes.discard(wake)
            if not wakes:
                del self._parked_without_session[replica_id]

    def touch(self, session: FetchSession, now_ms: int) -> None:
        """The session was used: it is now the most recently used, and its size and age
        decide again who may evict it (as of this moment, like Kafka's touch)."""
        session.last_used_ms = now_ms
        if session.cached_size >= 0:
            self.total_partitions -= session.cached_size
        session.cached_size = len(session.partitions)
        self.total_partitions += session.cached_size
        self._evictable_by_all.discard(session.id)
        self._evictable_by_privileged.discard(session.id)
        old = now_ms - session.creation_ms > self.eviction_ms
        if not session.privileged or old:
            self._evictable_by_privileged.add(session.id)
        if old:
            self._evictable_by_all.add(session.id)


class ContextKind(enum.Enum):
    SESSIONLESS = "sessionless"  # full answer, session id 0
    FULL = "full"  # full answer, then a new session is made from it
    INCREMENTAL = "incremental"  # the session's partitions, answer only what changed
    ERROR = "error"  # the request's session is unknown or its epoch wrong


@dataclass
class FetchContext:
    """How one Fetch request is served: which partitions to read, in which order, and which
    of their answers go back."""

    kind: ContextKind
    # Full and sessionless requests: every partition they name.
    requested: list[tuple[PartitionKey, Any]] = field(default_factory=list)
    session: FetchSession | None = None
    privileged: bool = False
    error: ErrorCode = ErrorCode.none
    uses_topic_ids: bool = False
    # With topic ids (full and sessionless): each partition's topic name, None for an id
    # the broker does not know. An incremental request asks its session.
    names: dict[PartitionKey, str | None] = field(default_factory=dict)
    # Incremental: the partitions the request named (new or with new parameters).
    named: frozenset[PartitionKey] = frozenset()
    # The follower's caught-up clock while this request reads (None: sessionless).
    clock: FetchClock | None = None
    replica_id: int = -1
    resolve: Resolver | None = None
    read_committed: bool = False  # the request's isolation level is READ_COMMITTED
    # Incremental: what this request reads, grown by the changes seen while it waits.
    _reading: set[PartitionKey] = field(default_factory=set)

    @property
    def partitions(self) -> list[tuple[PartitionKey, Any]]:
        """The partitions to read now, with their parameters, in the session's order.

        Full and sessionless: all the request names. Incremental: the ones it names, the
        unsettled ones, and those that changed since they were read (also while this
        request waited); the others have nothing new."""
        session = self.session
        if self.kind is not ContextKind.INCREMENTAL or session is None:
            return self.requested
        reading = self._reading
        reading.update(session.watch.take())
        reading.update(session.unsettled)
        reading.update(self.named)
        held = session.partitions
        if len(reading) * 4 >= len(held):
            return [(tp, cp.params) for tp, cp in held.items() if tp in reading]
        present = [(held[tp].order, tp) for tp in reading if tp in held]
        present.sort(key=lambda item: item[0])
        return [(tp, held[tp].params) for _, tp in present]

    def read(self, tp: PartitionKey, partition: Watched) -> None:
        """``partition`` was read for ``tp``: an incremental request's session hears of its
        next change (also while this request waits)."""
        if self.kind is ContextKind.INCREMENTAL and self.session is not None:
            self.session.watch.watch(tp, partition)

    def topic_name(self, tp: PartitionKey) -> str | None:
        """The name of the topic of ``tp``, one of ``self.partitions``."""
        if not self.uses_topic_ids:
            assert isinstance(tp[0], str)
            return tp[0]
        if self.kind is ContextKind.INCREMENTAL and self.session is not None:
            cp = self.session.partitions.get(tp)
            if cp is None:
                return None
            if cp.topic is None and self.resolve is not None:
                cp.topic = self.resolve(tp)  # an id unknown until now may be known by now
            return cp.topic
        return self.names[tp]

    def finish(self, cache: FetchSessionCache, now_ms: int,
               answers: list[tuple[PartitionKey, dict[str, Any]]],
               caught_up: Mapping[PartitionKey, tuple[Watched, int]] | None = None,
               ) -> tuple[int, list[tuple[PartitionKey, dict[str, Any]]]]:
        """The answer's session id and partitions, given the answers read (in the order of
        ``self.partitions``). Records what the fetcher now knows; ``caught_up``: the
        partitions read whose answer left the fetcher with nothing more to read, with the
        partition and its change count when read."""
        caught_up = caught_up or {}
        if self.kind is ContextKind.FULL:
            params = dict(self.requested)
            cached_parts: dict[PartitionKey, CachedPartition] = {}
            for tp, entry in answers:
                cp = CachedPartition(params[tp], self.names.get(tp))
                cp.must_respond(entry, update=True)
                cached_parts[tp] = cp
            session = cache.maybe_create(now_ms, self.privileged, cached_parts,
                                         self.uses_topic_ids, self.clock, self.replica_id)
            if session is None:
                return INVALID_SESSION_ID, answers
            self.session = session
            session.read_committed = self.read_committed
            for tp, _ in answers:
                seen = caught_up.get(tp)
                if seen is not None and seen[0].changes == seen[1]:
                    session.watch.watch(tp, seen[0])
                else:
                    session.unsettled.add(tp)  # also: changed since it was read
            return session.id, answers
        if self.kind is ContextKind.INCREMENTAL:
            session = self.session
            assert session is not None
            out = []
            for tp, entry in answers:
                cached = session.partitions.get(tp)
                if cached is None:  # forgotten by a later request while this one waited
                    continue
                if tp in caught_up:
                    session.unsettled.discard(tp)  # its watch tells of any change since
                else:
                    session.unsettled.add(tp)
                if cached.must_respond(entry, update=True):
                    out.append((tp, entry))
                    if entry.get("records"):
                        # Partitions that returned data go to the end of the session's
                        # order, so that a size-limited answer serves the others next time.
                        del session.partitions[tp]
                        session.place_last(tp, cached)
            return session.id, out
        return INVALID_SESSION_ID, answers


def new_context(cache: FetchSessionCache, now_ms: int, session_id: int, epoch: int,
                privileged: bool, fetch_data: list[tuple[PartitionKey, Any]],
                forgotten: list[PartitionKey], *, uses_topic_ids: bool = False,
                resolve: Resolver | None = None, replica_id: int = -1,
                read_committed: bool = False) -> FetchContext:
    """How to serve a Fetch request carrying ``session_id`` and ``epoch`` (Kafka's
    FetchManager.newContext). A full request closes the session it names. ``replica_id``:
    the follower's broker id (``privileged``), so that its session can be nudged.
    ``read_committed``: a consumer's READ_COMMITTED request.

    ``uses_topic_ids``: the request is Fetch v13+, its keys are (topic id, index) and
    ``resolve`` names their topics as of now."""
    if uses_topic_ids and resolve is None:
        raise ValueError("a request naming topics by id needs a resolver")

    def named(parts: list[tuple[PartitionKey, Any]]) -> dict[PartitionKey, str | None]:
        return {tp: resolve(tp) for tp, _ in parts} if resolve is not None else {}

    if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
        if session_id != INVALID_SESSION_ID:
            cache.remove(session_id)
        # A partition named twice is read once, with its last parameters (a session holds
        # each partition once).
        parts = list(dict(fetch_data).items())
        kind = ContextKind.SESSIONLESS if epoch == FINAL_EPOCH else ContextKind.FULL
        return FetchContext(kind, parts, privileged=privileged and kind is ContextKind.FULL,
                            uses_topic_ids=uses_topic_ids, names=named(parts),
                            clock=FetchClock(now_ms / 1000) if kind is ContextKind.FULL
                            else None, replica_id=replica_id, read_committed=read_committed)
    session = cache.get(session_id)
    if session is None:
        return FetchContext(ContextKind.ERROR, error=ErrorCode.fetch_session_id_not_found)
    if session.epoch != epoch:
        return FetchContext(ContextKind.ERROR, error=ErrorCode.invalid_fetch_session_epoch)
    if session.uses_topic_ids != uses_topic_ids:
        # A session opened with topic ids continued by a request without (or the reverse):
        # its keys cannot name the request's partitions.
        return FetchContext(ContextKind.ERROR, error=ErrorCode.fetch_session_topic_id_error)
    session.update(fetch_data, forgotten, resolve)
    if not session.partitions:
        # Everything forgotten: the session ends, and the request is answered sessionless.
        cache.remove(session.id)
        parts = list(dict(fetch_data).items())
        return FetchContext(ContextKind.SESSIONLESS, parts, uses_topic_ids=uses_topic_ids,
                            names=named(parts))
    cache.touch(session, now_ms)
    session.epoch = next_epoch(session.epoch)
    session.clock.at = now_ms / 1000
    session.nudged = False  # this request is the one a nudge asked for
    if session.read_committed != read_committed:
        # Caught up at the last stable offset is not caught up at the high watermark: what
        # the last request left unread may be readable now.
        session.read_committed = read_committed
        session.unsettled.update(session.partitions)
    return FetchContext(ContextKind.INCREMENTAL, session=session, privileged=privileged,
                        uses_topic_ids=uses_topic_ids, named=frozenset(tp for tp, _ in fetch_data),
                        clock=session.clock, resolve=resolve, read_committed=read_committed)


# --- the fetcher's side -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FetchPlan:
    """One request of a fetcher: the session fields and what to name."""

    session_id: int
    epoch: int
    send: dict[PartitionKey, Any]
    forgotten: list[PartitionKey]

    @property
    def full(self) -> bool:
        return self.epoch in (INITIAL_EPOCH, FINAL_EPOCH)


class FetcherSession:
    """The fetcher's view of its session with one broker (Kafka's FetchSessionHandler).

    ``build`` plans the next request from the partitions wanted now and their parameters
    (anything comparable: a changed value names the partition again). One request at a
    time: ``on_response`` or ``on_failure`` must follow each ``build``."""

    def __init__(self) -> None:
        self.session_id = INVALID_SESSION_ID
        self.epoch = INITIAL_EPOCH
        self._sent: dict[PartitionKey, Hashable] = {}

    def build(self, wanted: Mapping[PartitionKey, Hashable],
              changed: Iterable[PartitionKey] | None = None) -> FetchPlan:
        """The next request. ``changed``: the only keys whose value or presence in
        ``wanted`` may differ from the last plan's (None: any), so that an idle fetcher of
        thousands of partitions does not compare them all."""
        if self.epoch == INITIAL_EPOCH:
            self._sent = dict(wanted)
            return FetchPlan(self.session_id, INITIAL_EPOCH, dict(wanted), [])
        if changed is None:
            send = {tp: v for tp, v in wanted.items() if self._sent.get(tp, _ABSENT) != v}
            forgotten = [tp for tp in self._sent if tp not in wanted]
            self._sent = dict(wanted)
            return FetchPlan(self.session_id, self.epoch, send, forgotten)
        send, forgotten = {}, []
        for tp in changed:
            value = wanted.get(tp, _ABSENT)
            if value is _ABSENT:
                if self._sent.pop(tp, _ABSENT) is not _ABSENT:
                    forgotten.append(tp)
            elif self._sent.get(tp, _ABSENT) != value:
                send[tp] = value
                self._sent[tp] = value
        return FetchPlan(self.session_id, self.epoch, send, forgotten)

    def on_response(self, plan: FetchPlan, error: ErrorCode, session_id: int) -> None:
        if error != ErrorCode.none:
            # An unknown session starts over with a fresh one; a wrong epoch closes ours
            # with the full fetch that opens the next.
            if error != ErrorCode.fetch_session_id_not_found:
                self.epoch = INITIAL_EPOCH
                return
            self.reset()
            return
        if plan.full:
            if session_id == INVALID_SESSION_ID:
                self.reset()  # the broker kept no session (cache full): full fetches again
            else:
                self.session_id, self.epoch = session_id, next_epoch(INITIAL_EPOCH)
        elif session_id == INVALID_SESSION_ID:
            self.reset()  # the broker ended the session (every partition forgotten)
        else:
            self.epoch = next_epoch(self.epoch)

    def on_failure(self) -> None:
        """The request's fate is unknown (connection lost, timeout): the next request is a
        full one that also closes the old session on the broker."""
        self.epoch = INITIAL_EPOCH

    def reset(self) -> None:
        self.session_id = INVALID_SESSION_ID
        self.epoch = INITIAL_EPOCH
        self._sent = {}


_ABSENT = object()
