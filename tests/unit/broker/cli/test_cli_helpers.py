"""The admin CLI's pure parts: error lines, retries, times, record formats."""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from odradek.broker.cli import common
from odradek.broker.cli.common import CliError, describe_exception, parse_time, retry
from odradek.broker.cli.consume import Format
from odradek.broker.cli.groups import _describe_group
from odradek.broker.cli.produce import LineFormat


class FakeAdmin:
    """describe_groups answers as kafka-python does, from a script of error strings."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.calls = 0

    def describe_groups(self, groups: list[str]) -> dict[str, Any]:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        return {groups[0]: {"group_id": groups[0], "members": [], **answer}}


def test_a_retriable_group_error_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 17: on a fresh cluster the first `groups describe` said CoordinatorNotAvailable
    # (its coordinator's partition was still being created), later ones that the group does
    # not exist. The retriable answer is asked again, so both calls say the same.
    monkeypatch.setattr(common.time, "sleep", lambda s: None)
    admin = FakeAdmin([
        {"group_state": "Dead", "error": "[Error 15] CoordinatorNotAvailableError: "},
        {"group_state": "Dead", "error": "[Error 14] CoordinatorLoadInProgressError: "},
        {"group_state": "Dead", "error": "[Error 69] GroupIdNotFoundError: Group g not found."},
    ])
    with pytest.raises(CliError, match="group 'g' does not exist"):
        _describe_group(admin, "g")  # type: ignore[arg-type]
    assert admin.calls == 3


def test_retry_gives_up_with_the_last_error_at_its_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kafka.errors import CoordinatorNotAvailableError, InvalidTopicError

    clock = [0.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(common.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))

    def never() -> None:
        raise CoordinatorNotAvailableError("still not")

    with pytest.raises(CoordinatorNotAvailableError):
        retry(never, timeout=5)
    assert 4 <= clock[0] <= 5

    def fatal() -> None:
        raise InvalidTopicError("no")

    clock[0] = 0.0
    with pytest.raises(InvalidTopicError):
        retry(fatal, timeout=5)
    assert clock[0] == 0.0  # not retried


def test_a_client_exception_becomes_the_servers_message() -> None:
    from kafka.errors import TopicAlreadyExistsError

    e = TopicAlreadyExistsError(
        "Request 'CreateTopicsRequest(version=7, topics=[CreatableTopic(name='t', "
        "num_partitions=1, replication_factor=1, assignments=[], configs=[])], "
        "timeout_ms=15000, validate_only=False)' failed with response "
        "'CreateTopicsResponse(version=7, throttle_time_ms=0, topics=[CreatableTopicResult("
        "version=7, name='t', topic_id=None, error_code=36, error_message=\"Topic 't' already "
        "exists.\", topic_config_error_code=0, num_partitions=-1, replication_factor=-1, "
        "configs=None)])'.")
    line = describe_exception(e)
    assert line.startswith("the server refused the request: TopicAlreadyExists: Topic 't' "
                           "already exists; "), line
    assert "Request" not in line
    assert describe_exception(ValueError("plain")) == "ValueError: plain"


def test_times_are_milliseconds_or_iso_datetimes() -> None:
    assert parse_time("1700000000000", "--x") == 1700000000000
    assert parse_time("2026-12-06T10:00:00Z", "--x") == int(datetime.datetime(
        2026, 12, 6, 10, tzinfo=datetime.UTC).timestamp() * 1000)
    assert parse_time("2026-12-06T11:00:00+01:00", "--x") == parse_time(
        "2026-12-06T10:00:00Z", "--x")
    with pytest.raises(CliError, match="--x: 'soon'"):
        parse_time("soon", "--x")


def _msg(**kw: Any) -> SimpleNamespace:
    base = {"timestamp": 1000, "timestamp_type": 0, "partition": 2, "offset": 7,
            "headers": [("a", b"1"), ("b", None)], "key": b"k", "value": b"v"}
    return SimpleNamespace(**{**base, **kw})


def test_consumer_lines_follow_kafka_console_consumer() -> None:
    assert Format().line(_msg()) == "v"
    everything = Format.of({"print.key": "true", "print.timestamp": "true",
                            "print.partition": "true", "print.offset": "true",
                            "print.headers": "true"})
    assert everything.line(_msg()) == "CreateTime:1000\tPartition:2\tOffset:7\ta:1,b:null\tk\tv"
    assert everything.line(_msg(headers=[], key=None)) == (
        "CreateTime:1000\tPartition:2\tOffset:7\tNO_HEADERS\tnull\tv")
    assert Format.of({"print.key": "true", "key.separator": " | "}).line(_msg()) == "k | v"
    with pytest.raises(CliError, match="unknown print.colour"):
        Format.of({"print.colour": "true"})


def test_producer_lines_follow_kafka_console_producer() -> None:
    assert LineFormat().record("a\tb", 1) == (None, b"a\tb", [])
    keyed = LineFormat.of({"parse.key": "true", "key.separator": ":"})
    assert keyed.record("k:v:w", 1) == (b"k", b"v:w", [])
    with pytest.raises(CliError, match="line 3: no key separator"):
        keyed.record("nokey", 3)
    both = LineFormat.of({"parse.key": "true", "parse.headers": "true",
                          "null.marker": "NULL"})
    assert both.record("h:1,g:NULL\tNULL\tv", 1) == (None, b"v", [("h", b"1"), ("g", None)])
    assert both.record("\tk\tv", 1) == (b"k", b"v", [])



def test_a_refused_connection_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    # A dead broker stays listed until its session timeout: `cluster status` asks again.
    from kafka.errors import KafkaConnectionError

    from odradek.broker.cli import common

    monkeypatch.setattr(common.time, "sleep", lambda s: None)
    calls = []

    def describe() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaConnectionError("111 ECONNREFUSED")
        return "answer"

    assert retry(describe) == "answer" and len(calls) == 3
