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

``FetcherSession`` is the fetcher's side (Kafka's ``FetchSessionHandler``), used by the
follower fetchers.

No I/O and no clock: callers pass ``now_ms``.
"""

from __future__ import annotations

import enum
import random
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

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
    # The partition object and its change count when an answer last left the fetcher
    # caught up with nothing to say; while both still hold, an incremental fetch that does
    # not name the partition skips reading it (see handlers/fetch.py). None: read it.
    seen: object | None = None
    seen_changes: int = -1

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
                self.partitions[tp] = CachedPartition(
                    params, resolve(tp) if resolve is not None else None)
            else:
                cached.params = params
        for tp in forgotten:
            self.partitions.pop(tp, None)


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
                     uses_topic_ids: bool = False) -> int:
        """A new session holding ``partitions``; its id, or 0 when the cache has no room."""
        if len(self.sessions) >= self.max_entries and not self._try_evict(
                privileged, (privileged, len(partitions), 0), now_ms):
            return INVALID_SESSION_ID
        session = FetchSession(self._new_id(), privileged, partitions, now_ms, now_ms,
                               next_epoch(INITIAL_EPOCH), uses_topic_ids=uses_topic_ids)
        self.sessions[session.id] = session
        self.touch(session, now_ms)
        return session.id

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
            self._evictable_by_all.discard(session_id)
            self._evictable_by_privileged.discard(session_id)
            self.total_partitions -= max(0, session.cached_size)
        return session

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
    partitions: list[tuple[PartitionKey, Any]] = field(default_factory=list)
    session: FetchSession | None = None
    privileged: bool = False
    error: ErrorCode = ErrorCode.none
    uses_topic_ids: bool = False
    # With topic ids: each partition's topic name, None for an id the broker does not know.
    names: dict[PartitionKey, str | None] = field(default_factory=dict)
    # Incremental: the partitions the request named (new or with new parameters).
    named: frozenset[PartitionKey] = frozenset()

    def unchanged(self, tp: PartitionKey, current: object, changes: int,
                  log_start_offset: int) -> bool:
        """Incremental, not named, and ``current`` (the partition now hosted for ``tp``)
        has not changed since an answer left the fetcher caught up with it: the same wake-up
        count, and the log start offset the fetcher was last told (retention and
        DeleteRecords move it without waking anyone)."""
        if self.kind is not ContextKind.INCREMENTAL or tp in self.named:
            return False
        assert self.session is not None
        held = self.session.partitions.get(tp)
        return (held is not None and held.seen is current
                and held.seen_changes == changes
                and held.log_start_offset == log_start_offset)

    def topic_name(self, tp: PartitionKey) -> str | None:
        """The name of the topic of ``tp``, one of ``self.partitions``."""
        if self.uses_topic_ids:
            return self.names[tp]
        assert isinstance(tp[0], str)
        return tp[0]

    def finish(self, cache: FetchSessionCache, now_ms: int,
               answers: list[tuple[PartitionKey, dict[str, Any]]],
               caught_up: Mapping[PartitionKey, tuple[object, int]] | None = None,
               ) -> tuple[int, list[tuple[PartitionKey, dict[str, Any]]]]:
        """The answer's session id and partitions, given the answers read for
        ``self.partitions`` (same order; partitions skipped as ``unchanged`` have none).
        Records what the fetcher now knows; ``caught_up``: the partitions read whose answer
        left the fetcher with nothing more to read, with their object and change count."""
        caught_up = caught_up or {}
        if self.kind is ContextKind.FULL:
            params = dict(self.partitions)
            cached_parts: dict[PartitionKey, CachedPartition] = {}
            for tp, entry in answers:
                cp = CachedPartition(params[tp], self.names.get(tp))
                cp.must_respond(entry, update=True)
                cp.seen, cp.seen_changes = caught_up.get(tp, (None, -1))
                cached_parts[tp] = cp
            return cache.maybe_create(now_ms, self.privileged, cached_parts,
                                      self.uses_topic_ids), answers
        if self.kind is ContextKind.INCREMENTAL:
            session = self.session
            assert session is not None
            out = []
            for tp, entry in answers:
                held = session.partitions.get(tp)
                if held is None:  # forgotten by a later request while this one waited
                    continue
                held.seen, held.seen_changes = caught_up.get(tp, (None, -1))
                if held.must_respond(entry, update=True):
                    out.append((tp, entry))
                    if entry.get("records"):
                        # Partitions that returned data go to the end of the session's
                        # order, so that a size-limited answer serves the others next time.
                        del session.partitions[tp]
                        session.partitions[tp] = held
            return session.id, out
        return INVALID_SESSION_ID, answers


def new_context(cache: FetchSessionCache, now_ms: int, session_id: int, epoch: int,
                privileged: bool, fetch_data: list[tuple[PartitionKey, Any]],
                forgotten: list[PartitionKey], *, uses_topic_ids: bool = False,
                resolve: Resolver | None = None) -> FetchContext:
    """How to serve a Fetch request carrying ``session_id`` and ``epoch`` (Kafka's
    FetchManager.newContext). A full request closes the session it names.

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
                            uses_topic_ids=uses_topic_ids, names=named(parts))
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
    names: dict[PartitionKey, str | None] = {}
    if uses_topic_ids:
        assert resolve is not None
        for tp, cp in session.partitions.items():
            if cp.topic is None:  # an id unknown until now may be known by now
                cp.topic = resolve(tp)
            names[tp] = cp.topic
    return FetchContext(ContextKind.INCREMENTAL,
                        [(tp, cp.params) for tp, cp in session.partitions.items()],
                        session=session, privileged=privileged,
                        uses_topic_ids=uses_topic_ids, names=names,
                        named=frozenset(tp for tp, _ in fetch_data))


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

    def build(self, wanted: Mapping[PartitionKey, Hashable]) -> FetchPlan:
        if self.epoch == INITIAL_EPOCH:
            self._sent = dict(wanted)
            return FetchPlan(self.session_id, INITIAL_EPOCH, dict(wanted), [])
        send = {tp: v for tp, v in wanted.items() if self._sent.get(tp, _ABSENT) != v}
        forgotten = [tp for tp in self._sent if tp not in wanted]
        self._sent = dict(wanted)
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
