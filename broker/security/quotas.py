"""Client quotas (KIP-13, KIP-55, KIP-124, KIP-219, KIP-546, KIP-599, KIP-612) as pure logic.

What a client may use of a node is limited per *quota entity*: a user, a client-id, or a
user and a client-id together, each component naming one principal/client-id or the
*default* one (written ``<default>`` by Kafka's tools, a null name in the protocol); and
how fast connections may be opened from one address, per *ip* entity (an address or the
default one, never combined with the others). This module holds:

- the entity model (``QuotaEntity``), the quota keys and their validation, and
  ``QuotaConfigs``, an immutable map entity -> {key: value} that answers which quota applies
  to a connection (Kafka's 8-level precedence), DescribeClientQuotas filters and
  AlterClientQuotas validation, with Kafka's error messages;
- ``Rate``: Kafka's windowed rate (``Rate`` over a ``SampledStat``), the measurement quotas
  are checked against;
- ``ClientQuotaManager``: the produce, fetch and request quotas (Kafka's
  ``ClientQuotaManager`` and ``ClientRequestQuotaManager``), which record what a client used
  and say how long to throttle it;
- ``ControllerMutationQuotaManager``: the ``controller_mutation_rate`` quota (KIP-599, a
  token bucket) with its strict and permissive forms;
- ``ConnectionRateQuotas``: the ``connection_creation_rate`` quota per IP address (KIP-612),
  which says how long to hold a new connection before closing it unread.

No I/O, no asyncio, no clock of its own: every call takes ``now``, monotonic seconds as a
float, so tests and simulations are deterministic. Times are turned into whole
milliseconds first, because Kafka's formulas work on millisecond longs and rounding is part
of what a client sees in ``throttle_time_ms``.

What the caller must do (the Kafka behaviour this logic is one half of):

- Which requests count. Produce: ``produce`` records the request's size in bytes
  (``request.sizeInBytes``) after the append, for every acks setting; ``request`` records
  the handler's time unless acks=0 (KafkaApis.handleProduceRequest). Fetch from a consumer:
  ``request`` records the handler's time and ``fetch`` the response's size; if either asks
  for a throttle, the fetch bytes are *unrecorded* (``unrecord``) and the client gets an
  empty response carrying the throttle time (KafkaApis.handleFetchRequest; Kafka 4 still
  does this, ClientQuotaManager.unrecordQuotaSensor). A consumer fetch also asks for no more
  than ``max_value_in_quota_window`` bytes (min of it, the request's max_bytes and the
  broker's fetch.max.bytes). Follower fetches and other inter-broker ("cluster action")
  requests are exempt. CreateTopics, CreatePartitions and DeleteTopics go through
  ``ControllerMutationQuotaManager`` and the request quota. Every other client request
  records its handler time in ``request``.
- The response. The throttle time in the response is the max of the quotas' throttle times
  for that request (bandwidth vs request, or mutation vs request); the channel is throttled
  by the quota that gave the larger one.
- KIP-219 order: compute the throttle, send the response *immediately* with
  ``throttle_time_ms`` set, then mute the connection (read no further requests from it) for
  that long. New clients back off by themselves; the mute makes old ones wait too. With
  acks=0 no response is sent but the connection is still muted.
- Config changes. ``ClientQuotaManager`` reads the quota configs through a getter on every
  call, so a change in the metadata image applies from the next request on, as Kafka's
  ``updateQuotaMetricConfigs`` does.
- Housekeeping. Call ``expire_idle(now)`` now and then (Kafka checks every 30 s): sensors of
  clients idle for an hour are dropped.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, Protocol, TypeVar

from kio.schema.errors import ErrorCode

# --- entities ------------------------------------------------------------------------------

USER: Final = "user"
CLIENT_ID: Final = "client-id"
# Kafka's third entity type: connection_creation_rate per IP address (KIP-612).
IP: Final = "ip"
DEFAULT_NAME: Final = "<default>"


class _Default(enum.Enum):
    DEFAULT = "<default>"

    def __repr__(self) -> str:
        return "DEFAULT"


# The default entity of a component (a null name on the wire, `<default>` in tools).
DEFAULT: Final = _Default.DEFAULT
EntityName = str | Literal[_Default.DEFAULT]
# One (entity type, name) pair as the protocol carries it: None names the default entity.
WireComponent = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class QuotaEntity:
    """A quota entity: a user component, a client-id component, or both; or an ip
    component alone.

    Each component is a name, ``DEFAULT``, or absent (``None``). Note that ``None`` means
    *absent* here; on the wire (``to_wire``/``from_wire``) a ``None`` name means the default.
    """

    user: EntityName | None = None
    client_id: EntityName | None = None
    ip: EntityName | None = None

    def __post_init__(self) -> None:
        if self.ip is not None:
            if self.user is not None or self.client_id is not None:
                raise ValueError("an ip quota entity has no user or client-id component")
        elif self.user is None and self.client_id is None:
            raise ValueError("a quota entity needs a user, a client-id or an ip component")

    @classmethod
    def from_wire(cls, components: Iterable[WireComponent]) -> QuotaEntity:
        """The entity of valid protocol components (see ``validate_entity``)."""
        names: dict[str, EntityName] = {}
        for entity_type, name in components:
            if entity_type not in (USER, CLIENT_ID, IP):
                raise ValueError(f"unsupported quota entity type {entity_type!r}")
            names[entity_type] = DEFAULT if name is None else name
        return cls(user=names.get(USER), client_id=names.get(CLIENT_ID), ip=names.get(IP))

    def _components(self) -> tuple[tuple[str, str, EntityName], ...]:
        """(entity type, path segment, name) of each component present."""
        return tuple((t, seg, n) for t, seg, n in ((USER, "users", self.user),
                                                    (CLIENT_ID, "clients", self.client_id),
                                                    (IP, "ips", self.ip)) if n is not None)

    def to_wire(self) -> tuple[WireComponent, ...]:
        return tuple((t, None if n is DEFAULT else n) for t, _, n in self._components())

    @property
    def path(self) -> str:
        """Kafka's config path of the entity (what the precedence list is written in)."""
        return "/config" + "".join(f"/{seg}/{_shown(n)}" for _, seg, n in self._components())

    def __str__(self) -> str:
        return "{" + ", ".join(f"{t}={_shown(n)}" for t, _, n in self._components()) + "}"


def _shown(name: EntityName) -> str:
    return DEFAULT_NAME if name is DEFAULT else str(name)


def precedence(user: str, client_id: str) -> tuple[QuotaEntity, ...]:
    """The entities that may hold a connection's quota, most specific first.

    Kafka's order (ClientQuotaManager's javadoc and DefaultQuotaCallback.quotaMetricTags):
    user+client-id, user+default client, user, default user+client-id, default user+default
    client, default user, client-id, default client-id. A user quota beats a client-id one.
    """
    return (
        QuotaEntity(user, client_id),
        QuotaEntity(user, DEFAULT),
        QuotaEntity(user, None),
        QuotaEntity(DEFAULT, client_id),
        QuotaEntity(DEFAULT, DEFAULT),
        QuotaEntity(DEFAULT, None),
        QuotaEntity(None, client_id),
        QuotaEntity(None, DEFAULT),
    )


# --- quota keys ----------------------------------------------------------------------------

PRODUCER_BYTE_RATE: Final = "producer_byte_rate"
CONSUMER_BYTE_RATE: Final = "consumer_byte_rate"
REQUEST_PERCENTAGE: Final = "request_percentage"
CONTROLLER_MUTATION_RATE: Final = "controller_mutation_rate"
CONNECTION_CREATION_RATE: Final = "connection_creation_rate"

KeyType = Literal["long", "int", "double"]
# The keys of user and client-id entities and their Kafka types (QuotaConfig.
# userAndClientQuotaConfigs: the byte rates are LONG, the other two DOUBLE).
QUOTA_KEYS: Final[Mapping[str, KeyType]] = MappingProxyType({
    PRODUCER_BYTE_RATE: "long",
    CONSUMER_BYTE_RATE: "long",
    REQUEST_PERCENTAGE: "double",
    CONTROLLER_MUTATION_RATE: "double",
})
# The keys of ip entities (QuotaConfig.ipConfigs: connections per second, an INT).
IP_QUOTA_KEYS: Final[Mapping[str, KeyType]] = MappingProxyType({
    CONNECTION_CREATION_RATE: "int",
})
_INTEGRAL_MAX: Final[Mapping[KeyType, tuple[float, str]]] = MappingProxyType({
    "long": (float(2**63), "a LONG"),  # Java widens Long.MAX_VALUE to 2^63
    "int": (float(2**31 - 1), "an INT"),
})


def validate_quota_value(key: str, value: float, ip: bool = False) -> str | None:
    """Kafka's check of one quota value being set on a user/client-id entity (or, with
    ``ip``, an ip entity) (ClientQuotaControlManager.validateQuotaKeyValue), its message if
    invalid, else None."""
    key_type = (IP_QUOTA_KEYS if ip else QUOTA_KEYS).get(key)
    if key_type is None:
        return f"Invalid configuration key {key}"
    if math.isnan(value):
        # Kafka lets NaN through (every comparison with it is false); a NaN quota would
        # never throttle and would show as NaN to describe, so it is refused here.
        return f"Quota {key} must be a number, not NaN"
    if value <= 0.0:
        return f"Quota {key} must be greater than 0"
    if key_type in _INTEGRAL_MAX:
        limit, java_type = _INTEGRAL_MAX[key_type]
        if value > limit:
            return f"Proposed value for {key} is too large for {java_type}."
        if abs(math.fmod(value, 1.0)) > 1e-6:
            return f"{key} cannot be a fractional value."
    return None


def normalized_ip(name: str) -> str | None:
    """An ip entity's address in one spelling (``ipaddress``'s), or None if ``name`` is not
    an IP address. Kafka also takes a host name it can resolve (InetAddress.getByName);
    Odradek takes addresses only, because a quota matches a connection's peer address and
    resolving names would put DNS on the controller's path."""
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return None


def validate_entity(components: Sequence[WireComponent]) -> str | None:
    """Kafka's check of an AlterClientQuotas entity (ClientQuotaControlManager.
    validateEntity and configKeysForEntityType), its message if invalid, else None."""
    if not components:
        return "Invalid empty client quota entity"
    seen: list[str] = []
    for entity_type, name in components:
        if entity_type in seen:
            # Kafka's request parsing folds a repeated type into a map (last one wins)
            # before the controller sees it; refusing it is clearer than guessing.
            return f"Invalid client quota entity, duplicate entity entry {entity_type}"
        seen.append(entity_type)
        if entity_type not in (USER, CLIENT_ID, IP):
            return f"Unhandled client quota entity type: {entity_type}"
        if name is not None and name == "":
            return f"Empty {entity_type} not supported"
    if IP in seen:
        if USER in seen or CLIENT_ID in seen:
            # Kafka's message, missing space included (configKeysForEntityType).
            return ("Invalid quota entity combination, IP entity shouldnot be combined with "
                    "User or ClientId")
        ip = dict(components)[IP]
        if ip is not None and normalized_ip(ip) is None:
            return f"{ip} is not a valid IP or resolvable host."
    return None


# --- describe and alter --------------------------------------------------------------------

MATCH_EXACT: Final = 0  # the component names this entity
MATCH_DEFAULT: Final = 1  # the component is the default entity
MATCH_ANY: Final = 2  # the component is present, any name or the default (MATCH_TYPE_SPECIFIED)


@dataclass(frozen=True, slots=True)
class FilterComponent:
    """One component of a DescribeClientQuotas filter."""

    entity_type: str
    match_type: int
    match: str | None = None


class QuotaRequestError(Exception):
    """A DescribeClientQuotas request Kafka refuses as a whole (the response's error)."""

    def __init__(self, error_code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True, slots=True)
class QuotaOp:
    """One AlterClientQuotas op: set ``key`` to ``value``, or remove it (``value`` None)."""

    key: str
    value: float | None


@dataclass(frozen=True, slots=True)
class Alteration:
    """One AlterClientQuotas entry, as the protocol carries it."""

    entity: tuple[WireComponent, ...]
    ops: tuple[QuotaOp, ...]


@dataclass(frozen=True, slots=True)
class QuotaChange:
    """One change to store (a ClientQuotaRecord): ``value`` None removes the key."""

    entity: QuotaEntity
    key: str
    value: float | None


@dataclass(frozen=True, slots=True)
class AlterResult:
    """The outcome of one entry: ``error`` is Kafka's message, None on success. Every
    AlterClientQuotas validation error is INVALID_REQUEST."""

    entity: tuple[WireComponent, ...]
    error: str | None

    @property
    def error_code(self) -> ErrorCode:
        return ErrorCode.none if self.error is None else ErrorCode.invalid_request


@dataclass(frozen=True, slots=True)
class AlterOutcome:
    """What an AlterClientQuotas request does: the changes to store (only values that
    differ, removals only of keys that are set), one result per entry in request order, and
    the configs with the changes applied (what validate_only must not commit)."""

    changes: tuple[QuotaChange, ...]
    results: tuple[AlterResult, ...]
    configs: QuotaConfigs


class QuotaConfigs(Mapping[QuotaEntity, Mapping[str, float]]):
    """The quota configs of a cluster: entity -> {key: value}, immutable.

    The metadata image holds one; ``with_changes`` gives the next one when a
    ClientQuotaRecord is replayed. Entities without any key are not kept.
    """

    __slots__ = ("_entries", "_ip_quotas", "has_client_quotas", "has_connection_rates")

    def __init__(self, entries: Mapping[QuotaEntity, Mapping[str, float]] | None = None) -> None:
        frozen: dict[QuotaEntity, Mapping[str, float]] = {}
        for entity, values in (entries or {}).items():
            if values:
                frozen[entity] = MappingProxyType(dict(values))
        self._entries: Mapping[QuotaEntity, Mapping[str, float]] = MappingProxyType(frozen)
        # connection_creation_rate by normalized address ("" for the default ip entity),
        # so that a new connection costs one lookup.
        self._ip_quotas: dict[str, float] = {}
        for entity, values in frozen.items():
            if entity.ip is not None and CONNECTION_CREATION_RATE in values:
                name = "" if entity.ip is DEFAULT else normalized_ip(entity.ip)
                if name is not None:
                    self._ip_quotas[name] = values[CONNECTION_CREATION_RATE]
        # Whether any user/client-id entity is set: without one no request is measured.
        self.has_client_quotas = any(e.ip is None for e in frozen)
        # Whether any address is limited: without that a new connection is not measured.
        self.has_connection_rates = bool(self._ip_quotas)

    def __getitem__(self, entity: QuotaEntity) -> Mapping[str, float]:
        return self._entries[entity]

    def __iter__(self) -> Iterator[QuotaEntity]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        inner = ", ".join(f"{e}: {dict(v)}" for e, v in self._entries.items())
        return f"QuotaConfigs({{{inner}}})"

    def with_changes(self, entity: QuotaEntity, set: Mapping[str, float] | None = None,
                     remove: Iterable[str] = ()) -> QuotaConfigs:
        """A copy with ``set`` applied to ``entity``'s keys and the keys in ``remove``
        dropped (values are not validated here: records were validated when written)."""
        values = dict(self._entries.get(entity, {}))
        for key in remove:
            values.pop(key, None)
        values.update(set or {})
        entries = dict(self._entries)
        if values:
            entries[entity] = values
        else:
            entries.pop(entity, None)
        return QuotaConfigs(entries)

    def resolve(self, user: str, client_id: str,
                key: str) -> tuple[float | None, QuotaEntity | None]:
        """The quota ``key`` of a connection of ``user`` with ``client_id``, and the entity
        it comes from; (None, None) when no entity sets it.

        Each key resolves on its own, as Kafka runs one quota manager per key: an entity
        that sets only producer_byte_rate does not hide a consumer_byte_rate set lower down.
        """
        for entity in precedence(user, client_id):
            values = self._entries.get(entity)
            if values is not None and key in values:
                return values[key], entity
        return None, None

    def connection_rate(self, ip: str) -> float | None:
        """The connection_creation_rate of connections from address ``ip`` (normalized, as
        ``normalized_ip`` gives it): its own entity's, else the default ip entity's, else
        None (unlimited), as Kafka's ConnectionQuotas.connectionRateForIp."""
        quota = self._ip_quotas.get(ip)
        return self._ip_quotas.get("") if quota is None else quota

    def describe(self, components: Sequence[FilterComponent],
                 strict: bool = False) -> list[tuple[QuotaEntity, Mapping[str, float]]]:
        """The entries DescribeClientQuotas returns for a filter (Kafka's
        ClientQuotaControlManager.describeClientQuotas / ClientQuotasImage.describe).

        An entity matches when each component matches it (EXACT: that name; DEFAULT: the
        default entity; ANY: the type is present with any name); with ``strict`` it must
        have no other component. No components: everything, or nothing if ``strict``.
        Raises ``QuotaRequestError`` for the filters Kafka refuses.
        """
        exact: dict[str, EntityName] = {}
        present: list[str] = []
        for c in components:
            if c.entity_type == "":
                raise QuotaRequestError(ErrorCode.invalid_request, "Invalid empty entity type.")
            if c.entity_type in exact or c.entity_type in present:
                raise QuotaRequestError(
                    ErrorCode.invalid_request,
                    f"Entity type {c.entity_type} cannot appear more than once in the filter.")
            if c.entity_type not in (USER, CLIENT_ID, IP):
                raise QuotaRequestError(ErrorCode.unsupported_version,
                                        f"Unsupported entity type {c.entity_type}")
            if c.match_type == MATCH_EXACT:
                if c.match is None:
                    raise QuotaRequestError(
                        ErrorCode.invalid_request,
                        "Request specified MATCH_TYPE_EXACT, but set match string to null.")
                exact[c.entity_type] = c.match
            elif c.match_type == MATCH_DEFAULT:
                if c.match is not None:
                    raise QuotaRequestError(
                        ErrorCode.invalid_request,
                        "Request specified MATCH_TYPE_DEFAULT, but also specified a match "
                        "string.")
                exact[c.entity_type] = DEFAULT
            elif c.match_type == MATCH_ANY:
                if c.match is not None:
                    raise QuotaRequestError(
                        ErrorCode.invalid_request,
                        "Request specified MATCH_TYPE_SPECIFIED, but also specified a match "
                        "string.")
                present.append(c.entity_type)
            else:
                raise QuotaRequestError(ErrorCode.invalid_request,
                                        f"Unknown match type {c.match_type}")
        named = set(exact) | set(present)
        if IP in named and (USER in named or CLIENT_ID in named):
            raise QuotaRequestError(
                ErrorCode.invalid_request,
                "Invalid entity filter component combination. IP filter component should "
                "not be used with user or clientId filter component.")
        if not components and strict:
            return []
        out = []
        for entity, values in self._entries.items():
            have = {t: n for t, _, n in entity._components()}
            if strict and len(have) != len(named):
                continue
            if any(have.get(t) != n for t, n in exact.items()):
                continue
            if any(t not in have for t in present):
                continue
            out.append((entity, values))
        out.sort(key=lambda ev: _sort_key(ev[0]))
        return out

    def alter(self, entries: Sequence[Alteration]) -> AlterOutcome:
        """Validate an AlterClientQuotas request and compute its changes, entry by entry,
        as Kafka's ClientQuotaControlManager.alterClientQuotas does: an invalid entry
        changes nothing and reports Kafka's message; the others apply.

        Where Kafka reports something odd this reports what happened instead: a key named
        twice in one entry says "Duplicate quota key ..." (Kafka's result is overwritten by
        "Ignoring duplicate entity"); an entity named twice applies its first entry and
        reports "Ignoring duplicate entity ..." for the later ones, in their own results.
        """
        configs = self
        changes: list[QuotaChange] = []
        results: list[AlterResult] = []
        done: list[QuotaEntity] = []
        for entry in entries:
            error = _alter_error(entry)
            entity = None if error is not None else QuotaEntity.from_wire(entry.entity)
            if entity is not None and entity in done:
                error = f"Ignoring duplicate entity {entity}"
            if error is not None or entity is None:
                results.append(AlterResult(entry.entity, error))
                continue
            done.append(entity)
            current = configs._entries.get(entity, {})
            entity_changes = []
            for op in entry.ops:
                if op.value is None:
                    if op.key in current:
                        entity_changes.append(QuotaChange(entity, op.key, None))
                elif current.get(op.key) != op.value:
                    entity_changes.append(QuotaChange(entity, op.key, op.value))
            for change in entity_changes:
                if change.value is None:
                    configs = configs.with_changes(entity, remove=(change.key,))
                else:
                    configs = configs.with_changes(entity, {change.key: change.value})
            changes.extend(entity_changes)
            results.append(AlterResult(entry.entity, None))
        return AlterOutcome(tuple(changes), tuple(results), configs)


def _alter_error(entry: Alteration) -> str | None:
    keys: list[str] = []
    for op in entry.ops:
        if op.key in keys:
            return (f"Duplicate quota key {op.key} not updating quota for this entity "
                    f"{_wire_str(entry.entity)}")
        keys.append(op.key)
    error = validate_entity(entry.entity)
    if error is not None:
        return error
    ip = any(t == IP for t, _ in entry.entity)
    for op in entry.ops:
        # A removal is not validated: Kafka removes whatever key is named, if set.
        if op.value is not None:
            error = validate_quota_value(op.key, op.value, ip)
            if error is not None:
                return error
    return None


def _wire_str(components: Sequence[WireComponent]) -> str:
    shown = (f"{t}={DEFAULT_NAME if n is None else n}" for t, n in components)
    return "{" + ", ".join(shown) + "}"


def _sort_key(entity: QuotaEntity) -> tuple[str, str, str]:
    def part(name: EntityName | None) -> str:
        return "" if name is None else "\x00" if name is DEFAULT else "\x01" + str(name)
    return part(entity.user), part(entity.client_id), part(entity.ip)


# --- rate measurement ----------------------------------------------------------------------

QUOTA_WINDOW_NUM: Final = 11  # quota.window.num
QUOTA_WINDOW_SIZE_S: Final = 1  # quota.window.size.seconds
INACTIVE_SENSOR_EXPIRATION_S: Final = 3600  # ClientQuotaManager: drop sensors idle 1 h


def to_ms(now: float) -> int:
    """Monotonic seconds -> whole milliseconds, rounded (1.1 s is 1100 ms, not 1099)."""
    return math.floor(now * 1000.0 + 0.5)


def java_round(x: float) -> int:
    """Java's Math.round: halves go up (Python's round() goes to even)."""
    return math.floor(x + 0.5)


@dataclass(slots=True)
class _Sample:
    start_ms: int
    last_event_ms: int
    value: float = 0.0
    events: int = 0

    def reset(self, now_ms: int) -> None:
        self.start_ms = now_ms
        self.last_event_ms = now_ms
        self.value = 0.0
        self.events = 0


class Rate:
    """Kafka's ``Rate`` over a ``SampledStat`` (a windowed sum), per second.

    Values are summed into samples of ``window_ms`` each; ``num`` + 1 samples are kept, in a
    ring, because one sample may overlap the start of the measured span. Measuring first
    resets samples that are obsolete, i.e. whose last event is ``num * window_ms`` or more
    in the past (SampledStat.purgeObsoleteSamples), then divides the sum by the span since
    the start of the oldest sample, counting at least ``num - 1`` whole windows so that a
    first burst is not measured over a few milliseconds (Rate.windowSize).
    """

    __slots__ = ("num", "window_ms", "_samples", "_current")

    def __init__(self, num: int = QUOTA_WINDOW_NUM,
                 window_ms: int = QUOTA_WINDOW_SIZE_S * 1000) -> None:
        if num < 1 or window_ms < 1:
            raise ValueError("a rate needs at least one window of at least 1 ms")
        self.num = num
        self.window_ms = window_ms
        self._samples: list[_Sample] = []
        self._current = 0

    def record(self, value: float, now: float) -> None:
        self.record_ms(value, to_ms(now))

    def measure(self, now: float) -> float:
        return self.measure_ms(to_ms(now))

    def window_size(self, now: float) -> float:
        """The span (seconds) ``measure`` divides by at ``now``."""
        return self.window_size_ms(to_ms(now)) / 1000.0

    def record_ms(self, value: float, now_ms: int) -> None:
        sample = self._current_sample(now_ms)
        if now_ms - sample.start_ms >= self.window_ms:
            sample = self._advance(now_ms)
        sample.value += value
        sample.events += 1
        sample.last_event_ms = now_ms

    def measure_ms(self, now_ms: int) -> float:
        self._purge(now_ms)
        total = sum(s.value for s in self._samples)
        return total / (self.window_size_ms(now_ms) / 1000.0)

    def window_size_ms(self, now_ms: int) -> int:
        elapsed = now_ms - self._oldest_start_ms(now_ms)
        full_windows = elapsed // self.window_ms
        if full_windows < self.num - 1:
            elapsed += (self.num - 1 - full_windows) * self.window_ms
        return elapsed

    def _oldest_start_ms(self, now_ms: int) -> int:
        """When the oldest sample still measured began (SampledStat.oldest)."""
        self._purge(now_ms)
        if not self._samples:
            self._samples.append(_Sample(now_ms, now_ms))
        return min(s.start_ms for s in self._samples)

    def _current_sample(self, now_ms: int) -> _Sample:
        if not self._samples:
            self._samples.append(_Sample(now_ms, now_ms))
        return self._samples[self._current]

    def _advance(self, now_ms: int) -> _Sample:
        self._current = (self._current + 1) % (self.num + 1)
        if self._current >= len(self._samples):
            sample = _Sample(now_ms, now_ms)
            self._samples.append(sample)
            return sample
        sample = self._samples[self._current]
        sample.reset(now_ms)
        return sample

    def _purge(self, now_ms: int) -> None:
        expire_ms = self.num * self.window_ms
        for s in self._samples:
            # A sample that started before the measured span but saw an event inside it
            # is kept: it overlaps the span.
            if now_ms - s.last_event_ms >= expire_ms:
                s.reset(now_ms)


class SimpleRate(Rate):
    """Kafka's ``SimpleRate``, the rate of the replication throttles (KIP-73): the windowed
    sum divided by the time since the oldest sample began, or by one window while that is
    shorter (so a first burst is not measured over a few milliseconds). Unlike ``Rate`` it
    does not pad to ``num - 1`` windows: a replication throttle applies from its first
    second, not after a burst of ``num - 1`` windows' worth."""

    __slots__ = ()

    def window_size_ms(self, now_ms: int) -> int:
        return max(now_ms - self._oldest_start_ms(now_ms), self.window_ms)

    def seconds_until_at_most(self, bound: float, now: float) -> float:
        """How long until ``measure`` is down to ``bound`` (> 0) if nothing more is
        recorded: the sum spread from the oldest sample's start to then is the bound.
        Samples expiring meanwhile are left aside (they may bring it sooner or, moving the
        oldest start on, later), so this is when to look again."""
        now_ms = to_ms(now)
        elapsed_ms = now_ms - self._oldest_start_ms(now_ms)
        total = sum(s.value for s in self._samples)
        return max(0.0, total / bound - elapsed_ms / 1000.0)


def throttle_time_ms(observed: float, quota: float, window_ms: int) -> int:
    """Kafka's throttle time (QuotaUtils.throttleTime): the delay X that brings the observed
    rate O, measured over W, down to the quota T if nothing more is recorded:
    O * W / (W + X) = T, so X = (O - T) / T * W, rounded half up to whole milliseconds."""
    return java_round((observed - quota) / quota * window_ms)


# --- client quota managers -----------------------------------------------------------------

QuotaKind = Literal["produce", "fetch", "request"]
_KIND_KEYS: Final[Mapping[str, str]] = MappingProxyType({
    "produce": PRODUCER_BYTE_RATE,
    "fetch": CONSUMER_BYTE_RATE,
    "request": REQUEST_PERCENTAGE,
})


@dataclass(slots=True)
class _Sensor:
    rate: Rate
    last_record: float  # seconds, for idle expiry


class _Recorded(Protocol):
    @property
    def last_record(self) -> float: ...


_K = TypeVar("_K")
_R = TypeVar("_R", bound=_Recorded)


def expire_idle(sensors: dict[_K, _R], now: float, expiration_s: float) -> int:
    """Drop the entries not recorded into for longer than ``expiration_s`` (Kafka's
    Sensor.hasExpired: strictly more than that); the number dropped."""
    idle = [k for k, s in sensors.items() if now - s.last_record > expiration_s]
    for k in idle:
        del sensors[k]
    return len(idle)


def sensor_key(matched: QuotaEntity, user: str, client_id: str) -> tuple[str, str]:
    """The (user, client-id) a client's usage is counted under (Kafka's metric tags): the
    components of the matched entity, with a default component standing for the client's
    own name. So clients share a sensor exactly when they share a quota: all clients of
    /users/alice share alice's; under /users/<default> each user has one of its own; under
    /clients/<default> each client-id has one."""
    return (user if matched.user is not None else "",
            client_id if matched.client_id is not None else "")


class ClientQuotaManager:
    """The produce, fetch or request quota of one node (Kafka's ClientQuotaManager; for
    ``request``, ClientRequestQuotaManager).

    ``kind`` picks the key: ``produce`` -> producer_byte_rate and ``fetch`` ->
    consumer_byte_rate (values are bytes, quotas bytes per second); ``request`` ->
    request_percentage (see below). ``configs`` returns the current ``QuotaConfigs``; it is
    read on every call, so quota changes apply at once.

    A client's usage is recorded in the sensor of the entity its quota comes from
    (``sensor_key``); clients without a quota are not recorded at all (Kafka records them
    under an unlimited quota only once some quota exists; nothing can throttle them).

    Request quota on one event loop. Kafka's request_percentage is a share of *one* network
    or I/O thread's time: a handler's thread time is recorded as a percentage (time * 100 /
    1 s) and its rate compared against the quota, so 100 means one whole thread, out of a
    node capacity of (num.io.threads + num.network.threads) * 100. An Odradek node handles
    requests on one event loop, which plays the part of that one thread: ``request`` takes
    the **milliseconds of event-loop time** a request's handling took (measured by the
    caller, e.g. around the handler and the response encoding) and records ms / 10, the
    same percentage unit. The quota is therefore met when, over the quota window, a client's
    requests take at most ``request_percentage / 100 * window`` of the loop: 10 means 100 ms
    of loop time per second, 100 the whole loop. The node's capacity is 100, not
    (threads * 100), so a given percentage means more of an Odradek node than of a Kafka
    broker with several threads. As in Kafka (ClientRequestQuotaManager.throttleTime) a
    request throttle is capped at one window (``quota.window.size.seconds``); byte-rate
    throttles are not capped (ClientQuotaManager.throttleTime is QuotaUtils.throttleTime).
    """

    def __init__(self, kind: QuotaKind, configs: Callable[[], QuotaConfigs],
                 window_num: int = QUOTA_WINDOW_NUM,
                 window_size_s: float = QUOTA_WINDOW_SIZE_S,
                 inactive_expiration_s: float = INACTIVE_SENSOR_EXPIRATION_S) -> None:
        if kind not in _KIND_KEYS:
            raise ValueError(f"unknown quota kind {kind!r}: produce, fetch or request")
        self.kind: QuotaKind = kind
        self.key = _KIND_KEYS[kind]
        self._configs = configs
        self.window_num = window_num
        self.window_ms = to_ms(window_size_s)
        self.inactive_expiration_s = inactive_expiration_s
        self._sensors: dict[tuple[str, str], _Sensor] = {}

    def quota(self, user: str, client_id: str) -> float | None:
        """The quota that applies to the client (None: unlimited)."""
        return self._configs().resolve(user, client_id, self.key)[0]

    def record_and_throttle(self, user: str, client_id: str, value: float, now: float) -> int:
        """Record ``value`` (bytes; for ``request``, milliseconds of loop time) and return
        the throttle time in ms: 0 while the measured rate is within the quota, else
        Kafka's (O - T) / T * W (``throttle_time_ms``), W being the span the rate was
        measured over (ClientQuotaManager.recordAndGetThrottleTimeMs)."""
        found = self._sensor(user, client_id, now)
        if found is None:
            return 0
        sensor, quota = found
        now_ms = to_ms(now)
        sensor.rate.record_ms(self._unit(value), now_ms)
        sensor.last_record = now
        observed = sensor.rate.measure_ms(now_ms)
        if observed <= quota:  # Quota.acceptable of an upper bound
            return 0
        throttle = throttle_time_ms(observed, quota, sensor.rate.window_size_ms(now_ms))
        if self.kind == "request":
            throttle = min(throttle, self.window_ms)
        return throttle

    def record(self, user: str, client_id: str, value: float, now: float) -> None:
        """Record without checking the quota (Kafka's recordNoThrottle): usage that is only
        known after the response was sent counts against the next request."""
        found = self._sensor(user, client_id, now)
        if found is not None:
            found[0].rate.record_ms(self._unit(value), to_ms(now))
            found[0].last_record = now

    def unrecord(self, user: str, client_id: str, value: float, now: float) -> None:
        """Take back a recorded value (Kafka's unrecordQuotaSensor records its negative):
        a throttled fetch is answered empty, so its bytes must not count."""
        self.record(user, client_id, -value, now)

    def max_value_in_quota_window(self, user: str, client_id: str) -> float:
        """The largest value that is not throttled for sure: quota * (num - 1) * window
        (ClientQuotaManager.maxValueInQuotaWindow); a consumer fetch asks for no more bytes
        than this. ``inf`` without a quota (Kafka: Double.MAX_VALUE)."""
        quota = self.quota(user, client_id)
        if quota is None:
            return math.inf
        return quota * (self.window_num - 1) * (self.window_ms / 1000.0)

    def measured_rate(self, user: str, client_id: str, now: float) -> float:
        """The client's current measured rate (0 without a quota or a sensor)."""
        matched = self._configs().resolve(user, client_id, self.key)[1]
        if matched is None:
            return 0.0
        sensor = self._sensors.get(sensor_key(matched, user, client_id))
        return 0.0 if sensor is None else sensor.rate.measure(now)

    def expire_idle(self, now: float) -> int:
        """Drop the sensors not recorded into for longer than the inactive expiration
        (Kafka's Sensor.hasExpired: strictly more than 1 h); the number dropped."""
        return expire_idle(self._sensors, now, self.inactive_expiration_s)

    @property
    def sensor_count(self) -> int:
        return len(self._sensors)

    def _unit(self, value: float) -> float:
        # Loop milliseconds -> Kafka's percentage unit (nanos * 100 / 1e9 there).
        return value / 10.0 if self.kind == "request" else value

    def _sensor(self, user: str, client_id: str, now: float) -> tuple[_Sensor, float] | None:
        quota, matched = self._configs().resolve(user, client_id, self.key)
        if quota is None or matched is None:
            return None
        key = sensor_key(matched, user, client_id)
        sensor = self._sensors.get(key)
        if sensor is None:
            sensor = self._sensors[key] = _Sensor(Rate(self.window_num, self.window_ms), now)
        return sensor, quota


# --- controller mutation quota (KIP-599) ---------------------------------------------------

CONTROLLER_QUOTA_WINDOW_NUM: Final = 11  # controller.quota.window.num
CONTROLLER_QUOTA_WINDOW_SIZE_S: Final = 1  # controller.quota.window.size.seconds
THROTTLING_QUOTA_EXCEEDED_MESSAGE: Final = "The throttling quota has been exceeded."

# API key -> first version whose quota is strict (KafkaApis/ControllerApis newQuotaFor):
# CreateTopics v6, DeleteTopics v5, CreatePartitions v3. Older versions are permissive.
STRICT_SINCE_VERSION: Final[Mapping[int, int]] = MappingProxyType({19: 6, 20: 5, 37: 3})


def is_strict_mutation_quota(api_key: int, api_version: int) -> bool:
    """Whether a CreateTopics/DeleteTopics/CreatePartitions request gets the strict quota."""
    return api_version >= STRICT_SINCE_VERSION[api_key]


class TokenBucket:
    """Kafka's TokenBucket: refills at ``rate`` tokens per second up to a burst of
    ``num * window * rate``; recording takes tokens and may drive it below zero, which is
    when the quota is exhausted. Unlike a windowed rate it recovers as soon as the debt is
    paid: a debt of D tokens takes D / rate seconds.

    Kafka's bucket starts empty at time 0, i.e. full at any real (epoch) time; this one
    starts full at its creation."""

    __slots__ = ("num", "window_ms", "tokens", "_last_ms")

    def __init__(self, rate: float, now_ms: int, num: int = CONTROLLER_QUOTA_WINDOW_NUM,
                 window_ms: int = CONTROLLER_QUOTA_WINDOW_SIZE_S * 1000) -> None:
        self.num = num
        self.window_ms = window_ms
        self.tokens = self.burst(rate)
        self._last_ms = now_ms

    def burst(self, rate: float) -> float:
        return self.num * (self.window_ms / 1000.0) * rate

    def measure(self, rate: float, now_ms: int) -> float:
        self._refill(rate, now_ms)
        return self.tokens

    def record(self, value: float, rate: float, now_ms: int) -> None:
        self._refill(rate, now_ms)
        self.tokens = min(self.burst(rate), self.tokens - value)

    def _refill(self, rate: float, now_ms: int) -> None:
        elapsed_s = (now_ms - self._last_ms) / 1000.0
        self.tokens = min(self.burst(rate), self.tokens + rate * elapsed_s)
        self._last_ms = now_ms


def mutation_throttle_ms(tokens: float, rate: float) -> int:
    """The time to refill a negative bucket to zero (ControllerMutationQuotaManager.
    throttleTimeMs): -tokens / rate * 1000, rounded half up."""
    return java_round(-tokens / rate * 1000.0)


@dataclass(slots=True)
class _Bucket:
    bucket: TokenBucket
    last_record: float


@dataclass(frozen=True, slots=True)
class MutationVerdict:
    """What the quota says of a request's mutations: one flag per topic (False: answer that
    topic THROTTLING_QUOTA_EXCEEDED with THROTTLING_QUOTA_EXCEEDED_MESSAGE) and the
    request's throttle time from this quota."""

    accepted: tuple[bool, ...]
    throttle_ms: int


@dataclass(slots=True)
class ControllerMutationQuota:
    """The quota of one request (Kafka's Strict/PermissiveControllerMutationQuota), made by
    ``ControllerMutationQuotaManager.new_quota`` and charged once per topic.

    Strict (CreateTopics v6+, DeleteTopics v5+, CreatePartitions v3+): a topic is refused
    while the bucket is below zero and accepted otherwise, however many partitions it has
    (so one request can drive the bucket negative without being throttled: the *next* one
    pays). Permissive (older versions): every topic is accepted, and once the bucket is
    below zero the request is throttled for the time it takes to refill it.
    """

    strict: bool
    _bucket: _Bucket | None  # None: no quota applies
    _rate: float = 0.0
    _throttle_ms: int = 0
    _throttle_at: float = 0.0

    def record(self, partitions: int, now: float) -> bool:
        """Charge one topic's ``partitions`` mutations; False if a strict quota refuses it."""
        if self._bucket is None:
            return True
        now_ms = to_ms(now)
        b = self._bucket
        b.last_record = now
        if self.strict:
            tokens = b.bucket.measure(self._rate, now_ms)
            if tokens < 0:
                self._set_throttle(tokens, now)
                return False
            b.bucket.record(partitions, self._rate, now_ms)
            return True
        b.bucket.record(partitions, self._rate, now_ms)
        tokens = b.bucket.measure(self._rate, now_ms)
        if tokens < 0:
            self._set_throttle(tokens, now)
        return True

    @property
    def is_exceeded(self) -> bool:
        """Whether a strict quota has refused a topic of this request."""
        return self.strict and self._throttle_ms > 0

    def throttle_time_ms(self, now: float) -> int:
        """The throttle for the response, less the time since it was computed (a request
        may wait before it is answered): AbstractControllerMutationQuota.throttleTime."""
        return max(0, self._throttle_ms - (to_ms(now) - to_ms(self._throttle_at)))

    def _set_throttle(self, tokens: float, now: float) -> None:
        self._throttle_ms = mutation_throttle_ms(tokens, self._rate)
        self._throttle_at = now


class ControllerMutationQuotaManager:
    """The controller_mutation_rate quota (KIP-599, Kafka's ControllerMutationQuotaManager):
    partition mutations per second for CreateTopics (partitions created), CreatePartitions
    (partitions added) and DeleteTopics (partitions deleted).

    Each (user, client-id) sensor (``sensor_key``) holds a token bucket refilled at the
    quota rate, with a burst of ``window_num * window_size_s * rate`` mutations. The handler
    opens a quota per request (``new_quota``), charges each topic after the topic has passed
    every other check (ReplicationControlManager calls applyPartitionChangeQuota there) and
    answers a refused topic THROTTLING_QUOTA_EXCEEDED. The response's throttle_time_ms is
    the max of ``throttle_time_ms`` and the request quota's throttle, and the channel is
    muted by the larger one (sendResponseMaybeThrottleWithControllerQuota).
    """

    def __init__(self, configs: Callable[[], QuotaConfigs],
                 window_num: int = CONTROLLER_QUOTA_WINDOW_NUM,
                 window_size_s: float = CONTROLLER_QUOTA_WINDOW_SIZE_S,
                 inactive_expiration_s: float = INACTIVE_SENSOR_EXPIRATION_S) -> None:
        self._configs = configs
        self.window_num = window_num
        self.window_ms = to_ms(window_size_s)
        self.inactive_expiration_s = inactive_expiration_s
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def new_quota(self, user: str, client_id: str, strict: bool,
                  now: float) -> ControllerMutationQuota:
        """The quota object for one request (unbounded if no quota applies)."""
        rate, matched = self._configs().resolve(user, client_id, CONTROLLER_MUTATION_RATE)
        if rate is None or matched is None:
            return ControllerMutationQuota(strict, None)
        key = sensor_key(matched, user, client_id)
        b = self._buckets.get(key)
        if b is None:
            bucket = TokenBucket(rate, to_ms(now), self.window_num, self.window_ms)
            b = self._buckets[key] = _Bucket(bucket, now)
        return ControllerMutationQuota(strict, b, rate)

    def admit(self, user: str, client_id: str, partitions_per_topic: Sequence[int],
              strict: bool, now: float) -> MutationVerdict:
        """A whole request at once: charge each topic's mutations in order and say which are
        accepted and the request's throttle time."""
        quota = self.new_quota(user, client_id, strict, now)
        accepted = tuple(quota.record(n, now) for n in partitions_per_topic)
        return MutationVerdict(accepted, quota.throttle_time_ms(now))

    def tokens(self, user: str, client_id: str, now: float) -> float | None:
        """The tokens left in the client's bucket (None: no quota or no bucket yet)."""
        rate, matched = self._configs().resolve(user, client_id, CONTROLLER_MUTATION_RATE)
        if rate is None or matched is None:
            return None
        b = self._buckets.get(sensor_key(matched, user, client_id))
        return None if b is None else b.bucket.measure(rate, to_ms(now))

    def expire_idle(self, now: float) -> int:
        return expire_idle(self._buckets, now, self.inactive_expiration_s)

    @property
    def sensor_count(self) -> int:
        return len(self._buckets)



# --- connection creation rate per IP (KIP-612) ---------------------------------------------


class ConnectionRateQuotas:
    """The ``connection_creation_rate`` quota of ip entities (KIP-612, Kafka's
    ConnectionQuotas.recordIpConnectionMaybeThrottle): how many connections per second one
    address may open to a node.

    Each address with a quota (its own or the default ip entity's) has its own windowed
    rate of accepted connections (quota.window.num samples of quota.window.size.seconds,
    as the client quotas). A new connection is recorded; if that puts the rate over the
    quota it is taken back (the connection is not accepted, so it must not count) and the
    caller gets the throttle time, Kafka's (O - T) / T * W capped at one window: the node
    holds the connection that long without reading it, then closes it. A client that
    hammers the node thus costs it an accept and a close per attempt, never a request.

    As in Kafka the first connections of a burst pass up to about quota * (num - 1)
    (the rate of a fresh sensor is taken over at least num - 1 windows).
    """

    def __init__(self, configs: Callable[[], QuotaConfigs],
                 window_num: int = QUOTA_WINDOW_NUM,
                 window_size_s: float = QUOTA_WINDOW_SIZE_S,
                 inactive_expiration_s: float = INACTIVE_SENSOR_EXPIRATION_S) -> None:
        self._configs = configs
        self.window_num = window_num
        self.window_ms = to_ms(window_size_s)
        self.inactive_expiration_s = inactive_expiration_s
        self._sensors: dict[str, _Sensor] = {}

    def record_and_throttle(self, address: str, now: float) -> int:
        """Count a new connection from ``address`` (a peer address as the socket gives it)
        and return 0 to accept it, else how many ms to hold it before closing it."""
        configs = self._configs()
        if not configs.has_connection_rates:
            return 0  # the common case: no address parsed, nothing recorded
        ip = normalized_ip(address)
        quota = None if ip is None else configs.connection_rate(ip)
        if ip is None or quota is None:
            return 0
        now_ms = to_ms(now)
        sensor = self._sensors.get(ip)
        if sensor is None:
            sensor = self._sensors[ip] = _Sensor(Rate(self.window_num, self.window_ms), now)
        sensor.last_record = now
        sensor.rate.record_ms(1.0, now_ms)
        observed = sensor.rate.measure_ms(now_ms)
        if observed <= quota:
            return 0
        sensor.rate.record_ms(-1.0, now_ms)
        return min(throttle_time_ms(observed, quota, sensor.rate.window_size_ms(now_ms)),
                   self.window_ms)

    def expire_idle(self, now: float) -> int:
        """Drop the sensors of addresses that opened nothing for longer than the inactive
        expiration (1 h, as Kafka's per-IP sensors); the number dropped."""
        return expire_idle(self._sensors, now, self.inactive_expiration_s)

    @property
    def sensor_count(self) -> int:
        return len(self._sensors)


class ConnectionCreationRates:
    """``max.connection.creation.rate`` (KIP-612, Kafka's ConnectionQuotas.
    waitForConnectionSlot): how many connections per second a node accepts, over every
    listener together (the broker-wide rate, which the inter-broker listener does not
    count against) and on one listener (``listener.name.<listener>.max.connection.creation.
    rate``).

    Each accepted connection is recorded in the broker-wide rate (when its listener counts)
    and in its listener's; when that puts either over its limit, the caller gets how long to
    wait, Kafka's (O - T) / T * W capped at one window, and must accept nothing more on that
    listener until then: the connection already accepted waits with it, the next ones wait
    in the kernel's backlog, costing the node nothing. Unlike the per-address quota
    (``ConnectionRateQuotas``) this holds back every client of the listener.
    """

    def __init__(self, broker_rate: float | None, listener_rates: Mapping[str, float],
                 window_num: int = QUOTA_WINDOW_NUM,
                 window_size_s: float = QUOTA_WINDOW_SIZE_S) -> None:
        self.broker_rate = broker_rate
        self.listener_rates = dict(listener_rates)
        self.window_ms = to_ms(window_size_s)
        self._broker = Rate(window_num, self.window_ms)
        self._listeners = {name: Rate(window_num, self.window_ms) for name in listener_rates}

    def limited(self, listener: str, counts_broker_wide: bool) -> bool:
        """Whether connections on ``listener`` are subject to any creation rate."""
        return listener in self.listener_rates or (
            counts_broker_wide and self.broker_rate is not None)

    def record_and_throttle(self, listener: str, counts_broker_wide: bool, now: float) -> int:
        """Count a connection accepted on ``listener``: 0, or the ms to accept nothing more
        there (the larger of the broker-wide and the listener's throttle)."""
        now_ms = to_ms(now)
        throttle = 0
        checks = []
        if counts_broker_wide and self.broker_rate is not None:
            checks.append((self._broker, self.broker_rate))
        if listener in self._listeners:
            checks.append((self._listeners[listener], self.listener_rates[listener]))
        for rate, limit in checks:
            rate.record_ms(1.0, now_ms)
            observed = rate.measure_ms(now_ms)
            if observed > limit:
                throttle = max(throttle, min(
                    throttle_time_ms(observed, limit, rate.window_size_ms(now_ms)),
                    self.window_ms))
        return throttle
