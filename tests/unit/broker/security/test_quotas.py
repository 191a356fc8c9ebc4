"""Client quotas as pure logic: entity precedence, DescribeClientQuotas filters,
AlterClientQuotas validation, Kafka's windowed Rate, throttle times checked against numbers
worked out by hand from Kafka's formulas, shared sensors, idle expiry, the controller
mutation token bucket, and a deterministic simulation of a client over its quota."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from odradek.broker.security.quotas import (
    CONNECTION_CREATION_RATE,
    CONSUMER_BYTE_RATE,
    CONTROLLER_MUTATION_RATE,
    DEFAULT,
    MATCH_ANY,
    MATCH_DEFAULT,
    MATCH_EXACT,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    Alteration,
    ClientQuotaManager,
    ConnectionCreationRates,
    ConnectionRateQuotas,
    ControllerMutationQuotaManager,
    FilterComponent,
    QuotaChange,
    QuotaConfigs,
    QuotaEntity,
    QuotaKind,
    QuotaOp,
    QuotaRequestError,
    Rate,
    is_strict_mutation_quota,
    precedence,
    throttle_time_ms,
    to_ms,
    validate_quota_value,
)


def configs(*entries: tuple[QuotaEntity, dict[str, float]]) -> QuotaConfigs:
    out = QuotaConfigs()
    for entity, values in entries:
        out = out.with_changes(entity, values)
    return out


def manager(kind: QuotaKind, cfg: QuotaConfigs) -> ClientQuotaManager:
    return ClientQuotaManager(kind, lambda: cfg)


# --- entities ------------------------------------------------------------------------------


def test_entity_wire_form_path_and_text() -> None:
    e = QuotaEntity.from_wire([("user", "alice"), ("client-id", None)])
    assert e == QuotaEntity("alice", DEFAULT)
    assert e.to_wire() == (("user", "alice"), ("client-id", None))
    assert e.path == "/config/users/alice/clients/<default>"
    assert str(e) == "{user=alice, client-id=<default>}"
    assert QuotaEntity(None, "app").path == "/config/clients/app"
    with pytest.raises(ValueError):
        QuotaEntity()


# --- precedence ----------------------------------------------------------------------------

ALL_LEVELS = precedence("alice", "app")


def test_precedence_is_kafkas_eight_levels_in_order() -> None:
    assert [e.path for e in ALL_LEVELS] == [
        "/config/users/alice/clients/app",
        "/config/users/alice/clients/<default>",
        "/config/users/alice",
        "/config/users/<default>/clients/app",
        "/config/users/<default>/clients/<default>",
        "/config/users/<default>",
        "/config/clients/app",
        "/config/clients/<default>",
    ]


def test_each_level_wins_over_every_level_below_it() -> None:
    cfg = configs(*((e, {PRODUCER_BYTE_RATE: float(i + 1)}) for i, e in enumerate(ALL_LEVELS)))
    for i, entity in enumerate(ALL_LEVELS):
        assert cfg.resolve("alice", "app", PRODUCER_BYTE_RATE) == (float(i + 1), entity)
        cfg = cfg.with_changes(entity, remove={PRODUCER_BYTE_RATE})
    assert cfg.resolve("alice", "app", PRODUCER_BYTE_RATE) == (None, None)
    assert len(cfg) == 0  # entities left without a key are dropped


def test_other_clients_fall_through_to_the_defaults() -> None:
    cfg = configs(*((e, {PRODUCER_BYTE_RATE: float(i + 1)}) for i, e in enumerate(ALL_LEVELS)))
    assert cfg.resolve("bob", "other", PRODUCER_BYTE_RATE) == (5.0, QuotaEntity(DEFAULT, DEFAULT))
    assert cfg.resolve("alice", "other", PRODUCER_BYTE_RATE) == (2.0,
                                                                 QuotaEntity("alice", DEFAULT))
    assert cfg.resolve("bob", "app", PRODUCER_BYTE_RATE) == (4.0, QuotaEntity(DEFAULT, "app"))


def test_precedence_without_defaults() -> None:
    cfg = configs((QuotaEntity("alice", "app"), {PRODUCER_BYTE_RATE: 1}),
                  (QuotaEntity("alice"), {PRODUCER_BYTE_RATE: 3}),
                  (QuotaEntity(None, "app"), {PRODUCER_BYTE_RATE: 7}))
    assert cfg.resolve("alice", "app", PRODUCER_BYTE_RATE)[0] == 1
    assert cfg.resolve("alice", "other", PRODUCER_BYTE_RATE)[0] == 3  # user beats client-id
    assert cfg.resolve("bob", "app", PRODUCER_BYTE_RATE)[0] == 7
    assert cfg.resolve("bob", "other", PRODUCER_BYTE_RATE) == (None, None)


def test_each_key_resolves_on_its_own() -> None:
    cfg = configs((QuotaEntity("alice"), {PRODUCER_BYTE_RATE: 10}),
                  (QuotaEntity(None, "app"), {CONSUMER_BYTE_RATE: 20}))
    assert cfg.resolve("alice", "app", PRODUCER_BYTE_RATE) == (10, QuotaEntity("alice"))
    assert cfg.resolve("alice", "app", CONSUMER_BYTE_RATE) == (20, QuotaEntity(None, "app"))
    assert cfg.resolve("alice", "app", REQUEST_PERCENTAGE) == (None, None)


def test_configs_are_immutable_values() -> None:
    base = configs((QuotaEntity("alice"), {PRODUCER_BYTE_RATE: 10}))
    changed = base.with_changes(QuotaEntity("alice"), {CONSUMER_BYTE_RATE: 5})
    assert dict(base[QuotaEntity("alice")]) == {PRODUCER_BYTE_RATE: 10}
    assert dict(changed[QuotaEntity("alice")]) == {PRODUCER_BYTE_RATE: 10, CONSUMER_BYTE_RATE: 5}
    with pytest.raises(TypeError):
        base[QuotaEntity("alice")][PRODUCER_BYTE_RATE] = 1  # type: ignore[index]


# --- describe ------------------------------------------------------------------------------

E1 = QuotaEntity("alice")
E2 = QuotaEntity("alice", "app")
E3 = QuotaEntity(DEFAULT)
E4 = QuotaEntity(DEFAULT, DEFAULT)
E5 = QuotaEntity(None, "app")
E6 = QuotaEntity(None, DEFAULT)
E7 = QuotaEntity("bob", DEFAULT)
DESCRIBED = configs(*((e, {PRODUCER_BYTE_RATE: float(i)})
                      for i, e in enumerate([E1, E2, E3, E4, E5, E6, E7])))


def described(*components: FilterComponent, strict: bool = False) -> set[QuotaEntity]:
    return {e for e, _ in DESCRIBED.describe(list(components), strict)}


def user(match_type: int, match: str | None = None) -> FilterComponent:
    return FilterComponent("user", match_type, match)


def client(match_type: int, match: str | None = None) -> FilterComponent:
    return FilterComponent("client-id", match_type, match)


def test_describe_without_components() -> None:
    assert described() == {E1, E2, E3, E4, E5, E6, E7}
    assert described(strict=True) == set()


def test_describe_exact_default_and_any() -> None:
    assert described(user(MATCH_EXACT, "alice")) == {E1, E2}
    assert described(user(MATCH_EXACT, "alice"), strict=True) == {E1}
    assert described(user(MATCH_DEFAULT)) == {E3, E4}
    assert described(user(MATCH_DEFAULT), strict=True) == {E3}
    assert described(user(MATCH_ANY)) == {E1, E2, E3, E4, E7}
    assert described(user(MATCH_ANY), strict=True) == {E1, E3}
    assert described(client(MATCH_EXACT, "app")) == {E2, E5}
    assert described(client(MATCH_EXACT, "app"), strict=True) == {E5}
    assert described(client(MATCH_DEFAULT)) == {E4, E6, E7}
    assert described(user(MATCH_EXACT, "carol")) == set()


def test_describe_combined_components() -> None:
    assert described(user(MATCH_ANY), client(MATCH_DEFAULT)) == {E4, E7}
    assert described(user(MATCH_ANY), client(MATCH_DEFAULT), strict=True) == {E4, E7}
    assert described(user(MATCH_EXACT, "alice"), client(MATCH_ANY)) == {E2}
    assert described(user(MATCH_DEFAULT), client(MATCH_EXACT, "app")) == set()


def test_describe_returns_the_values() -> None:
    [(entity, values)] = DESCRIBED.describe([user(MATCH_EXACT, "bob")], strict=False)
    assert entity == E7 and dict(values) == {PRODUCER_BYTE_RATE: 6.0}


@pytest.mark.parametrize("components, code, message", [
    ([FilterComponent("", MATCH_ANY)], ErrorCode.invalid_request, "Invalid empty entity type."),
    ([user(MATCH_ANY), user(MATCH_DEFAULT)], ErrorCode.invalid_request,
     "Entity type user cannot appear more than once in the filter."),
    ([FilterComponent("group", MATCH_ANY)], ErrorCode.unsupported_version,
     "Unsupported entity type group"),
    ([user(MATCH_EXACT)], ErrorCode.invalid_request,
     "Request specified MATCH_TYPE_EXACT, but set match string to null."),
    ([user(MATCH_DEFAULT, "x")], ErrorCode.invalid_request,
     "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."),
    ([user(MATCH_ANY, "x")], ErrorCode.invalid_request,
     "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."),
    ([user(7)], ErrorCode.invalid_request, "Unknown match type 7"),
    ([FilterComponent("ip", MATCH_ANY), client(MATCH_ANY)], ErrorCode.invalid_request,
     "Invalid entity filter component combination. IP filter component should not be used "
     "with user or clientId filter component."),
])
def test_describe_refuses_what_kafka_refuses(components: list[FilterComponent],
                                             code: ErrorCode, message: str) -> None:
    with pytest.raises(QuotaRequestError) as e:
        DESCRIBED.describe(components)
    assert (e.value.error_code, e.value.message) == (code, message)


def test_describe_ip_filter_finds_no_user_or_client_entity() -> None:
    assert described(FilterComponent("ip", MATCH_ANY)) == set()


# --- alter ---------------------------------------------------------------------------------


def alter_one(entity: list[tuple[str, str | None]], *ops: QuotaOp,
              base: QuotaConfigs | None = None) -> str | None:
    outcome = (base or QuotaConfigs()).alter([Alteration(tuple(entity), ops)])
    [result] = outcome.results
    if result.error is not None:
        assert outcome.changes == () and result.error_code == ErrorCode.invalid_request
    return result.error


ALICE: list[tuple[str, str | None]] = [("user", "alice")]


@pytest.mark.parametrize("entity, ops, message", [
    ([], [QuotaOp(PRODUCER_BYTE_RATE, 1)], "Invalid empty client quota entity"),
    ([("user", "a"), ("user", "b")], [],
     "Invalid client quota entity, duplicate entity entry user"),
    ([("group", "g")], [], "Unhandled client quota entity type: group"),
    ([("user", "")], [], "Empty user not supported"),
    ([("client-id", "")], [], "Empty client-id not supported"),
    (ALICE, [QuotaOp("foo", 1)], "Invalid configuration key foo"),
    (ALICE, [QuotaOp(PRODUCER_BYTE_RATE, 0)], "Quota producer_byte_rate must be greater than 0"),
    (ALICE, [QuotaOp(CONSUMER_BYTE_RATE, -5)], "Quota consumer_byte_rate must be greater than 0"),
    (ALICE, [QuotaOp(REQUEST_PERCENTAGE, 0)], "Quota request_percentage must be greater than 0"),
    (ALICE, [QuotaOp(CONTROLLER_MUTATION_RATE, -0.5)],
     "Quota controller_mutation_rate must be greater than 0"),
    (ALICE, [QuotaOp(PRODUCER_BYTE_RATE, 1.5)], "producer_byte_rate cannot be a fractional value."),
    (ALICE, [QuotaOp(PRODUCER_BYTE_RATE, 1e20)],
     "Proposed value for producer_byte_rate is too large for a LONG."),
    (ALICE, [QuotaOp(PRODUCER_BYTE_RATE, 10), QuotaOp(PRODUCER_BYTE_RATE, None)],
     "Duplicate quota key producer_byte_rate not updating quota for this entity {user=alice}"),
    # One invalid op spoils the whole entry, including the valid one before it.
    (ALICE, [QuotaOp(CONSUMER_BYTE_RATE, 10), QuotaOp(PRODUCER_BYTE_RATE, 0)],
     "Quota producer_byte_rate must be greater than 0"),
])
def test_alter_errors_are_kafkas(entity: list[tuple[str, str | None]], ops: list[QuotaOp],
                                 message: str) -> None:
    assert alter_one(entity, *ops) == message


def test_alter_refuses_nan() -> None:
    assert alter_one(ALICE, QuotaOp(REQUEST_PERCENTAGE, math.nan)) is not None


IP1 = [("ip", "10.0.0.1")]


@pytest.mark.parametrize(("entity", "ops", "message"), [
    (IP1, [QuotaOp(CONNECTION_CREATION_RATE, 10)], None),
    ([("ip", None)], [QuotaOp(CONNECTION_CREATION_RATE, 10)], None),
    ([("ip", "::1")], [QuotaOp(CONNECTION_CREATION_RATE, 2**31 - 1)], None),
    # Kafka's messages (ClientQuotaControlManager.configKeysForEntityType and
    # validateQuotaKeyValue): ip entities take connection_creation_rate only, an INT, and
    # no other key takes an ip entity.
    (IP1, [QuotaOp(PRODUCER_BYTE_RATE, 10)], "Invalid configuration key producer_byte_rate"),
    (ALICE, [QuotaOp(CONNECTION_CREATION_RATE, 10)],
     "Invalid configuration key connection_creation_rate"),
    (IP1, [QuotaOp(CONNECTION_CREATION_RATE, 2.5)],
     "connection_creation_rate cannot be a fractional value."),
    (IP1, [QuotaOp(CONNECTION_CREATION_RATE, 2.0**31)],
     "Proposed value for connection_creation_rate is too large for an INT."),
    (IP1, [QuotaOp(CONNECTION_CREATION_RATE, 0)],
     "Quota connection_creation_rate must be greater than 0"),
    ([("ip", "10.0.0.1"), ("user", "alice")], [QuotaOp(CONNECTION_CREATION_RATE, 10)],
     "Invalid quota entity combination, IP entity shouldnot be combined with User or ClientId"),
    ([("ip", "not-an-address")], [QuotaOp(CONNECTION_CREATION_RATE, 10)],
     "not-an-address is not a valid IP or resolvable host."),
    ([("ip", "")], [QuotaOp(CONNECTION_CREATION_RATE, 10)], "Empty ip not supported"),
])
def test_ip_entities_as_kafka_validates_them(entity: list[tuple[str, str | None]],
                                             ops: list[QuotaOp], message: str | None) -> None:
    assert alter_one(entity, *ops) == message


def test_ip_entities_are_stored_described_and_resolved() -> None:
    outcome = QuotaConfigs().alter([
        Alteration((("ip", "10.0.0.1"),), (QuotaOp(CONNECTION_CREATION_RATE, 5),)),
        Alteration((("ip", None),), (QuotaOp(CONNECTION_CREATION_RATE, 50),)),
        Alteration(tuple(ALICE), (QuotaOp(PRODUCER_BYTE_RATE, 100),)),
    ])
    cfg = outcome.configs
    ip1, default_ip = QuotaEntity(ip="10.0.0.1"), QuotaEntity(ip=DEFAULT)
    assert ip1.to_wire() == (("ip", "10.0.0.1"),) and ip1.path == "/config/ips/10.0.0.1"
    assert str(default_ip) == "{ip=<default>}"
    assert QuotaEntity.from_wire([("ip", None)]) == default_ip
    with pytest.raises(ValueError):
        QuotaEntity(user="alice", ip="10.0.0.1")
    assert cfg.connection_rate("10.0.0.1") == 5
    assert cfg.connection_rate("10.0.0.2") == 50  # the default ip entity
    assert cfg.has_client_quotas
    assert not configs((default_ip, {CONNECTION_CREATION_RATE: 1})).has_client_quotas
    assert QuotaConfigs().connection_rate("10.0.0.1") is None
    # One spelling per address: an IPv6 entity matches the socket's compressed form.
    v6 = configs((QuotaEntity(ip="0:0:0:0:0:0:0:1"), {CONNECTION_CREATION_RATE: 7}))
    assert v6.connection_rate("::1") == 7
    ips = [e for e, _ in cfg.describe([FilterComponent("ip", MATCH_ANY)])]
    assert ips == [default_ip, ip1]
    assert [e for e, _ in cfg.describe([FilterComponent("ip", MATCH_EXACT, "10.0.0.1")])] \
        == [ip1]
    assert [e for e, _ in cfg.describe([FilterComponent("ip", MATCH_DEFAULT)])] == [default_ip]
    assert QuotaEntity("alice") in [e for e, _ in cfg.describe([])]
    assert [e for e, _ in cfg.describe([user(MATCH_ANY)])] == [QuotaEntity("alice")]
    # A user/client-id quota never comes from an ip entity, and the other way round.
    assert cfg.resolve("alice", "app", PRODUCER_BYTE_RATE) == (100, QuotaEntity("alice"))


def test_connection_rate_throttles_as_kafka_counts() -> None:
    cfg = configs((QuotaEntity(ip=DEFAULT), {CONNECTION_CREATION_RATE: 2}))
    quotas = ConnectionRateQuotas(lambda: cfg)
    # A fresh rate is taken over (num - 1) = 10 windows: 20 connections pass at once.
    assert [quotas.record_and_throttle("10.0.0.1", 0.0) for _ in range(20)] == [0] * 20
    # The 21st would make 21 / 10 s = 2.1 > 2: (2.1 - 2) / 2 * 10,000 ms = 500 ms, and it
    # is taken back, so the next one is judged the same way.
    assert quotas.record_and_throttle("10.0.0.1", 0.0) == 500
    assert quotas.record_and_throttle("10.0.0.1", 0.0) == 500
    # Another address has its own rate under the same default quota.
    assert quotas.record_and_throttle("10.0.0.2", 0.0) == 0
    # Far over the quota the hold is capped at one window (1 s).
    crowded = configs((QuotaEntity(ip="10.0.0.3"), {CONNECTION_CREATION_RATE: 1}))
    q3 = ConnectionRateQuotas(lambda: crowded)
    for _ in range(10):
        assert q3.record_and_throttle("10.0.0.3", 0.0) == 0
    assert q3.record_and_throttle("10.0.0.3", 0.0) == 1000
    # Addresses without a quota, and peers that are not addresses, are never held.
    assert q3.record_and_throttle("10.0.0.4", 0.0) == 0
    assert q3.record_and_throttle("unix-socket", 0.0) == 0
    assert q3.sensor_count == 1
    assert q3.expire_idle(3600.5) == 1 and q3.sensor_count == 0


@settings(max_examples=60, deadline=None)
@given(quota=st.integers(1, 50), attempts_per_s=st.integers(1, 400))
def test_connection_rate_admits_about_the_quota(quota: int, attempts_per_s: int) -> None:
    """A client opening connections steadily gets no more than its quota accepted over a
    long run (plus the first burst), and all of them while it stays clearly under (at the
    quota itself a window's edge can measure a little over it, in Kafka's Rate too)."""
    cfg = configs((QuotaEntity(ip=DEFAULT), {CONNECTION_CREATION_RATE: quota}))
    quotas = ConnectionRateQuotas(lambda: cfg)
    seconds = 60
    accepted = sum(quotas.record_and_throttle("10.0.0.9", i / attempts_per_s) == 0
                   for i in range(seconds * attempts_per_s))
    if attempts_per_s * 1.25 <= quota:
        assert accepted == seconds * attempts_per_s
    else:
        assert accepted <= quota * (seconds + 10) + 1
        assert accepted >= min(quota, attempts_per_s) * seconds * 0.9


def test_alter_accepts_fractional_doubles_and_whole_longs() -> None:
    assert alter_one(ALICE, QuotaOp(REQUEST_PERCENTAGE, 0.5)) is None
    assert alter_one(ALICE, QuotaOp(CONTROLLER_MUTATION_RATE, 2.5)) is None
    assert alter_one(ALICE, QuotaOp(PRODUCER_BYTE_RATE, 1024.0)) is None
    assert validate_quota_value(PRODUCER_BYTE_RATE, 1024.0000001) is None  # Kafka's epsilon


def test_alter_changes_only_what_differs() -> None:
    base = configs((QuotaEntity("alice"), {PRODUCER_BYTE_RATE: 10, CONSUMER_BYTE_RATE: 20}))
    outcome = base.alter([Alteration(tuple(ALICE), (
        QuotaOp(PRODUCER_BYTE_RATE, 10),  # unchanged: no record
        QuotaOp(CONSUMER_BYTE_RATE, None),  # set: removed
        QuotaOp(REQUEST_PERCENTAGE, None),  # not set: nothing to remove, and no error
        QuotaOp("not-a-key", None),  # a removal is not validated (as in Kafka)
        QuotaOp(CONTROLLER_MUTATION_RATE, 5),
    ))])
    assert [r.error for r in outcome.results] == [None]
    alice = QuotaEntity("alice")
    assert outcome.changes == (QuotaChange(alice, CONSUMER_BYTE_RATE, None),
                               QuotaChange(alice, CONTROLLER_MUTATION_RATE, 5))
    assert dict(outcome.configs[alice]) == {PRODUCER_BYTE_RATE: 10, CONTROLLER_MUTATION_RATE: 5}
    assert dict(base[alice]) == {PRODUCER_BYTE_RATE: 10, CONSUMER_BYTE_RATE: 20}


def test_alter_entries_are_independent_and_a_repeated_entity_is_ignored() -> None:
    outcome = QuotaConfigs().alter([
        Alteration((("user", None),), (QuotaOp(PRODUCER_BYTE_RATE, 100),)),
        Alteration((("client-id", "x"),), (QuotaOp(PRODUCER_BYTE_RATE, -1),)),
        Alteration((("user", None),), (QuotaOp(PRODUCER_BYTE_RATE, 200),)),
    ])
    assert [r.error for r in outcome.results] == [
        None, "Quota producer_byte_rate must be greater than 0",
        "Ignoring duplicate entity {user=<default>}"]
    assert outcome.changes == (QuotaChange(QuotaEntity(DEFAULT), PRODUCER_BYTE_RATE, 100),)
    assert outcome.configs.resolve("anyone", "c", PRODUCER_BYTE_RATE)[0] == 100


# --- Rate ----------------------------------------------------------------------------------


def test_first_window_is_measured_over_num_minus_one_windows() -> None:
    rate = Rate(11, 1000)
    rate.record(2000, 0.0)
    # Elapsed 0 ms, 0 full windows < 10: the span is padded to 10 windows.
    assert rate.window_size(0.0) == 10.0
    assert rate.measure(0.0) == 200.0
    # 2.7 s in: 2 full windows, padded with 8 more: 10.7 s.
    assert rate.window_size(2.7) == 10.7
    assert rate.measure(2.7) == pytest.approx(2000 / 10.7)


def test_span_is_the_real_elapsed_time_after_num_minus_one_windows() -> None:
    rate = Rate(11, 1000)
    rate.record(500, 0.0)
    rate.record(1000, 10.5)  # the first sample is complete: a new one starts at 10.5
    assert rate.window_size(10.5) == 10.5
    assert rate.measure(10.5) == pytest.approx(1500 / 10.5)


def test_obsolete_samples_are_purged() -> None:
    rate = Rate(11, 1000)
    rate.record(500, 0.0)
    # Obsolete once its last event is num * window = 11 s old, not before.
    assert rate.measure(10.999) == pytest.approx(500 / 10.999)
    assert rate.measure(11.0) == 0.0
    assert rate.window_size(11.0) == 10.0


def test_num_plus_one_samples_are_kept_and_the_oldest_is_purged() -> None:
    rate = Rate(11, 1000)
    for second in range(21):
        rate.record(1, float(second))
    # Samples of seconds 9..20 are kept (12 = num + 1); at 20 s the one of second 9 is
    # 11 s old and purged, so 11 values over 10..20 s: a 10 s span.
    assert rate.window_size(20.0) == 10.0
    assert rate.measure(20.0) == pytest.approx(1.1)
    assert rate.measure(20.5) == pytest.approx(11 / 10.5)


def test_a_sample_overlapping_the_span_is_kept() -> None:
    rate = Rate(3, 1000)
    rate.record(10, 0.0)
    rate.record(10, 0.9)  # same sample (started at 0), last event at 0.9
    # At 3.5 s the sample started 3.5 s ago (> 3 windows) but its last event is 2.6 s old.
    assert rate.window_size(3.5) == 3.5
    assert rate.measure(3.5) == pytest.approx(20 / 3.5)


def test_the_ring_has_room_for_the_overlapping_sample() -> None:
    rate = Rate(3, 1000)
    for at in (0.0, 0.9, 1.0, 2.0, 3.0):
        rate.record(10, at)
    # Samples start at 0, 1, 2 and 3 s: num + 1 of them. The one of 0 s overlaps the span
    # (last event 0.9 s) and must still be there: 50 over 3.5 s, not 30 over 2.5 s.
    assert rate.window_size(3.5) == 3.5
    assert rate.measure(3.5) == pytest.approx(50 / 3.5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 10_000)), min_size=1,
                max_size=40),
       st.integers(0, 20_000))
def test_span_stays_between_num_minus_one_and_num_plus_one_windows(
        steps: list[tuple[int, int]], probe_ms: int) -> None:
    rate = Rate(11, 1000)
    now_ms = 0
    for gap_ms, value in steps:
        now_ms += gap_ms
        rate.record_ms(value, now_ms)
        assert rate.measure_ms(now_ms) >= 0
    span = rate.window_size_ms(now_ms + probe_ms)
    assert 10_000 <= span < 12_000


# --- throttle time -------------------------------------------------------------------------


def test_to_ms_rounds_float_seconds() -> None:
    assert to_ms(4.35) == 4350 and to_ms(1.1) == 1100 and to_ms(0.0005) == 1


def test_throttle_formula() -> None:
    # X = (O - T) / T * W, rounded half up.
    assert throttle_time_ms(200.0, 100.0, 10_000) == 10_000
    assert throttle_time_ms(100.5, 100.0, 1_001) == 5  # 5.005
    assert throttle_time_ms(100.05, 100.0, 10_000) == 5  # 5.0 exactly
    assert throttle_time_ms(100.0, 100.0, 10_000) == 0
    # Java's Math.round: halves go up, not to even.
    assert throttle_time_ms(3.0, 2.0, 5) == 3  # 2.5
    assert throttle_time_ms(3.0, 2.0, 9) == 5  # 4.5


BOB_100 = configs((QuotaEntity("bob"), {PRODUCER_BYTE_RATE: 100}))


def test_produce_throttle_by_hand() -> None:
    m = manager("produce", BOB_100)
    # 500 B at 0: 500 / 10 s = 50 B/s <= 100.
    assert m.record_and_throttle("bob", "c", 500, 0.0) == 0
    # 1000 B more at 10.5 s: 1500 B / 10.5 s = 142.857 B/s; (142.857 - 100) / 100 * 10500.
    assert m.record_and_throttle("bob", "c", 1000, 10.5) == 4500
    # Exactly at the quota is not throttled: 1000 B over a (padded) 10 s span = 100 B/s.
    fresh = manager("produce", BOB_100)
    assert fresh.record_and_throttle("bob", "c", 1000, 0.0) == 0
    assert fresh.record_and_throttle("bob", "c", 1, 0.0) == 10  # 100.1 B/s: 0.001 * 10 s


def test_byte_rate_throttle_is_not_capped() -> None:
    # Kafka's ClientQuotaManager.throttleTime is QuotaUtils.throttleTime, without a bound.
    m = manager("produce", BOB_100)
    # 1 MB at once: 100_000 B/s over 10 s -> (100000 - 100) / 100 * 10000 ms.
    assert m.record_and_throttle("bob", "c", 1_000_000, 0.0) == 9_990_000


def test_request_quota_is_loop_time_and_capped_at_one_window() -> None:
    cfg = configs((QuotaEntity("bob"), {REQUEST_PERCENTAGE: 10}))
    m = manager("request", cfg)
    # 500 ms of loop time = 50 percent-seconds; / 10 s = 5 % <= 10 %.
    assert m.record_and_throttle("bob", "c", 500, 0.0) == 0
    assert m.measured_rate("bob", "c", 0.0) == pytest.approx(5.0)
    # 600 ms more: 110 / 10 s = 11 %: (11 - 10) / 10 * 10000 = 1000 ms, the cap exactly.
    assert m.record_and_throttle("bob", "c", 600, 0.0) == 1000
    # 2 s more: 31 % would be 21 s; capped at one window (quota.window.size.seconds).
    assert m.record_and_throttle("bob", "c", 2000, 0.0) == 1000
    # 10 % of a 10 s window is 1 s of loop time: what a client may use per window.
    fresh = manager("request", cfg)
    assert fresh.record_and_throttle("bob", "c", 1000, 0.0) == 0
    assert fresh.record_and_throttle("bob", "c", 1, 0.0) == 10  # 10.01 %: 0.001 * 10 s


def test_no_quota_no_throttle_and_no_sensor() -> None:
    m = manager("produce", BOB_100)
    assert m.record_and_throttle("alice", "c", 10**9, 0.0) == 0
    assert m.sensor_count == 0
    assert m.quota("alice", "c") is None
    assert m.max_value_in_quota_window("alice", "c") == math.inf


def test_fetch_unrecord_takes_the_bytes_back() -> None:
    cfg = configs((QuotaEntity(None, "consumer"), {CONSUMER_BYTE_RATE: 100}))
    m = manager("fetch", cfg)
    assert m.record_and_throttle("u", "consumer", 300, 0.0) == 0
    assert m.record_and_throttle("u", "consumer", 2000, 1.0) > 0
    m.unrecord("u", "consumer", 2000, 1.0)  # the throttled fetch is answered empty
    assert m.measured_rate("u", "consumer", 1.0) == pytest.approx(30.0)
    assert m.record_and_throttle("u", "consumer", 100, 1.0) == 0


def test_max_value_in_quota_window() -> None:
    cfg = configs((QuotaEntity(None, "consumer"), {CONSUMER_BYTE_RATE: 1000}))
    assert manager("fetch", cfg).max_value_in_quota_window("u", "consumer") == 10_000
    m = ClientQuotaManager("fetch", lambda: cfg, window_num=5, window_size_s=2)
    assert m.max_value_in_quota_window("u", "consumer") == 1000 * 4 * 2


def test_quota_changes_apply_to_the_next_request() -> None:
    current = [BOB_100]
    m = ClientQuotaManager("produce", lambda: current[0])
    assert m.record_and_throttle("bob", "c", 1500, 0.0) == 5000  # 150 B/s vs 100
    current[0] = configs((QuotaEntity("bob"), {PRODUCER_BYTE_RATE: 1000}))
    assert m.record_and_throttle("bob", "c", 1, 0.0) == 0  # same sensor, new quota


# --- shared sensors ------------------------------------------------------------------------


def test_clients_of_a_user_quota_share_its_sensor() -> None:
    m = manager("produce", configs((QuotaEntity("alice"), {PRODUCER_BYTE_RATE: 1000})))
    assert m.record_and_throttle("alice", "a", 6000, 0.0) == 0  # 600 B/s
    # b's bytes add to a's: 12000 / 10 s = 1200 B/s -> 0.2 * 10000 ms.
    assert m.record_and_throttle("alice", "b", 6000, 0.0) == 2000
    assert m.sensor_count == 1


def test_per_client_defaults_give_each_client_its_own_sensor() -> None:
    m = manager("produce", configs((QuotaEntity("alice", DEFAULT), {PRODUCER_BYTE_RATE: 1000})))
    assert m.record_and_throttle("alice", "a", 6000, 0.0) == 0
    assert m.record_and_throttle("alice", "b", 6000, 0.0) == 0
    assert m.sensor_count == 2


def test_default_user_quota_is_per_user() -> None:
    m = manager("produce", configs((QuotaEntity(DEFAULT), {PRODUCER_BYTE_RATE: 1000})))
    assert m.record_and_throttle("alice", "a", 6000, 0.0) == 0
    assert m.record_and_throttle("bob", "a", 6000, 0.0) == 0
    assert m.record_and_throttle("alice", "b", 6000, 0.0) == 2000  # alice's clients share
    assert m.sensor_count == 2


def test_client_id_quota_is_shared_across_users() -> None:
    m = manager("produce", configs((QuotaEntity(None, DEFAULT), {PRODUCER_BYTE_RATE: 1000})))
    assert m.record_and_throttle("alice", "app", 6000, 0.0) == 0
    assert m.record_and_throttle("bob", "other", 6000, 0.0) == 0
    assert m.record_and_throttle("bob", "app", 6000, 0.0) == 2000
    assert m.sensor_count == 2


# --- idle expiry ---------------------------------------------------------------------------


def test_sensors_expire_after_an_hour_idle() -> None:
    m = manager("produce", BOB_100)
    m.record_and_throttle("bob", "c", 10, 0.0)
    m.record("bob", "c", 10, 100.0)  # any recording keeps it alive
    assert m.expire_idle(3700.0) == 0  # exactly 1 h: Kafka expires strictly after
    assert m.expire_idle(3700.001) == 1
    assert m.sensor_count == 0
    # A new sensor starts from nothing.
    assert m.record_and_throttle("bob", "c", 1000, 4000.0) == 0


# --- controller mutation quota -------------------------------------------------------------

MUTATIONS_10 = configs((QuotaEntity("ops"), {CONTROLLER_MUTATION_RATE: 10}))


def test_strict_quota_refuses_only_once_exhausted() -> None:
    m = ControllerMutationQuotaManager(lambda: MUTATIONS_10)
    # Burst = 11 windows * 1 s * 10/s = 110 tokens. 100 then 20: both accepted (the bucket
    # was not below zero before either), it ends at -10 and the request is not throttled.
    v = m.admit("ops", "c", [100, 20], strict=True, now=0.0)
    assert (v.accepted, v.throttle_ms) == ((True, True), 0)
    assert m.tokens("ops", "c", 0.0) == -10
    # The next request pays: refused, throttled -(-10) / 10 * 1000 ms.
    q = m.new_quota("ops", "c", strict=True, now=0.0)
    assert q.record(5, 0.0) is False and q.is_exceeded
    assert q.throttle_time_ms(0.0) == 1000
    assert q.throttle_time_ms(0.4) == 600  # less the time the answer waited
    assert q.throttle_time_ms(2.0) == 0
    # After 1 s the bucket is back at 0, which is not below zero: accepted.
    assert m.admit("ops", "c", [5], strict=True, now=1.0).accepted == (True,)


def test_permissive_quota_accepts_and_throttles() -> None:
    m = ControllerMutationQuotaManager(lambda: MUTATIONS_10)
    v = m.admit("ops", "c", [100, 20], strict=False, now=0.0)
    assert (v.accepted, v.throttle_ms) == ((True, True), 1000)
    v = m.admit("ops", "c", [50], strict=False, now=0.0)
    assert (v.accepted, v.throttle_ms) == ((True,), 6000)  # -60 tokens
    assert m.tokens("ops", "c", 2.0) == pytest.approx(-40)
    assert m.tokens("ops", "c", 1000.0) == 110  # refills up to the burst only


def test_no_mutation_quota_is_unbounded() -> None:
    m = ControllerMutationQuotaManager(lambda: MUTATIONS_10)
    v = m.admit("someone", "c", [10**6, 10**6], strict=True, now=0.0)
    assert (v.accepted, v.throttle_ms) == ((True, True), 0)
    assert m.sensor_count == 0


def test_mutation_buckets_expire() -> None:
    m = ControllerMutationQuotaManager(lambda: MUTATIONS_10)
    m.admit("ops", "c", [1], strict=True, now=0.0)
    assert m.expire_idle(3600.0) == 0 and m.expire_idle(3600.5) == 1


def test_strict_since_versions() -> None:
    assert not is_strict_mutation_quota(19, 5) and is_strict_mutation_quota(19, 6)  # Create
    assert not is_strict_mutation_quota(20, 4) and is_strict_mutation_quota(20, 5)  # Delete
    assert not is_strict_mutation_quota(37, 2) and is_strict_mutation_quota(37, 3)  # Partitions


# --- simulation: a client at 3x its quota --------------------------------------------------


def simulate(m: ClientQuotaManager, client_id: str, batch: int, interval_s: float,
             duration_s: float) -> tuple[float, int]:
    """A producer that would send ``batch`` bytes every ``interval_s`` and honours each
    throttle time it is given (waits it out before its next request). Returns its long-run
    byte rate and the number of throttled responses."""
    now, sent, throttled = 0.0, 0, 0
    while now < duration_s:
        throttle = m.record_and_throttle("user", client_id, batch, now)
        sent += batch
        throttled += throttle > 0
        now += max(interval_s, throttle / 1000.0)
    return sent / now, throttled


@pytest.mark.parametrize("batch", [16_384, 300_000, 1_000_000])
def test_client_at_three_times_its_quota_is_held_to_it(batch: int) -> None:
    quota = 100_000.0  # bytes/s
    cfg = configs((QuotaEntity(None, "greedy"), {PRODUCER_BYTE_RATE: quota}))
    m = manager("produce", cfg)
    rate, throttled = simulate(m, "greedy", batch, batch / (3 * quota), duration_s=600.0)
    assert throttled > 0
    assert abs(rate - quota) <= 0.10 * quota, rate
    # Another client without a quota, on the same manager, is not held back at all.
    free_rate, free_throttled = simulate(m, "free", batch, batch / (3 * quota), 600.0)
    assert free_throttled == 0
    assert free_rate == pytest.approx(3 * quota, rel=0.01)


def test_connection_creation_rates_pace_listeners_and_the_node() -> None:
    rates = ConnectionCreationRates(broker_rate=4, listener_rates={"PACED": 2})
    assert rates.limited("PACED", True) and rates.limited("OTHER", True)
    assert not rates.limited("INTERNAL", False)  # the inter-broker listener: node-wide only
    assert not ConnectionCreationRates(None, {}).limited("OTHER", True)
    # PACED: 20 pass (2/s over at least 10 windows), the 21st waits (2.1 - 2) / 2 * 10 s.
    assert [rates.record_and_throttle("PACED", True, 0.0) for _ in range(20)] == [0] * 20
    assert rates.record_and_throttle("PACED", True, 0.0) == 500
    # The node-wide rate counted those 21 too: 40 / 10 s would be its limit (4/s).
    assert [rates.record_and_throttle("OTHER", True, 0.0) for _ in range(19)] == [0] * 19
    assert rates.record_and_throttle("OTHER", True, 0.0) == 250  # (4.1 - 4) / 4 * 10 s
    # The inter-broker listener is not counted node-wide and has no limit of its own.
    assert rates.record_and_throttle("INTERNAL", False, 0.0) == 0
    # Far over a limit the wait is one window at most; and no connection is taken back.
    crowded = ConnectionCreationRates(None, {"PACED": 1})
    waits = [crowded.record_and_throttle("PACED", True, 0.0) for _ in range(30)]
    assert waits[:10] == [0] * 10 and waits[-1] == 1000
