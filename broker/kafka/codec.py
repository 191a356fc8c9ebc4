"""Schema-driven Kafka message codec on top of kio.

kio gives one frozen dataclass per API, version and entity, generated from Kafka's own
message specs. This module adds the small pieces the broker needs around it:

* reading a request frame (header version chosen by the request's flexibility),
* writing a response frame (ApiVersions always uses response header v0),
* building a response of *any* version from one plain ``dict``: fields that the version
  does not have are dropped and missing ones get their zero value, so a handler is written
  once for all versions instead of once per version.

No I/O and no asyncio here.
"""

from __future__ import annotations

import datetime
import io
import struct
import time
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from functools import cache
from typing import Any

from kio.index import load_payload_module
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map, schema_name_map
from kio.schema.response_header.v0.header import ResponseHeader as ResponseHeaderV0
from kio.schema.response_header.v1.header import ResponseHeader as ResponseHeaderV1
from kio.serial import entity_reader, entity_writer
from kio.serial.readers import Reader
from kio.serial.writers import Writer
from kio.static.constants import EntityType
from kio.static.protocol import Entity, Payload, RequestPayload

from odradek.broker.kafka import bounds

API_VERSIONS_KEY = 18

_I16_I16 = struct.Struct(">hh")
_I32 = struct.Struct(">i")


class MalformedRequest(Exception):
    """The frame could not be parsed; the connection that sent it must be closed."""


class MalformedResponse(Exception):
    """A peer's response could not be parsed; the connection it came on must be closed."""


class UnsupportedVersion(Exception):
    """A known API asked for at a version we do not serve."""

    def __init__(self, api_key: int, api_version: int, correlation_id: int) -> None:
        super().__init__(f"api_key={api_key} version={api_version} is not supported")
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class UnknownApiKey(Exception):
    def __init__(self, api_key: int, api_version: int, correlation_id: int) -> None:
        super().__init__(f"unknown api_key={api_key}")
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any


def kio_versions(api_key: int) -> tuple[int, int] | None:
    """The (min, max) versions kio has schemas for, or None for an unknown API key."""
    name = api_key_map.get(api_key)
    if name is None:
        return None
    versions = schema_name_map[name].keys()
    return min(versions), max(versions)


@cache
def request_class(api_key: int, version: int) -> type[RequestPayload]:
    cls: type[RequestPayload] = load_payload_module(api_key, version, EntityType.request
                                                    ).__dict__[
        _entity_name(api_key, version, EntityType.request)]
    return cls


@cache
def response_class(api_key: int, version: int) -> type[Payload]:
    cls: type[Payload] = load_payload_module(api_key, version, EntityType.response).__dict__[
        _entity_name(api_key, version, EntityType.response)]
    return cls


def warm(versions: typing.Iterable[tuple[int, int]], pause_s: float = 0.0) -> None:
    """Load the request and response classes of these (api key, version) pairs now.

    kio loads a version's schema module on its first use, and building its dataclasses
    takes 5-150 ms of CPU (a Fetch response is the largest). Loaded on the event loop by
    the first request of that version, it held a restarted broker's loop just when it took
    over leaderships (two 0.2 s stalls in one controlled shutdown, the new leader's writes
    waiting for them). A node calls this from a thread at start-up, with ``pause_s``
    between two versions."""
    for api_key, version in versions:
        try:
            request_class(api_key, version)
            response_class(api_key, version)
        except Exception:  # noqa: BLE001 - warming is best effort: first use raises again
            continue
        if pause_s:
            time.sleep(pause_s)


def _entity_name(api_key: int, version: int,
                 kind: typing.Literal[EntityType.request, EntityType.response]) -> str:
    path = schema_name_map[api_key_map[api_key]][version][kind]
    return path.split(":", 1)[1]


# Memos keyed by entity class (functools.cache would do, but its typing wants hashable
# instances and dataclass types do not say they are).
_readers: dict[type[Entity], Reader[Any]] = {}
_writers: dict[type[Entity], Writer[Any]] = {}
_plans: dict[type[Entity], tuple[_FieldPlan, ...]] = {}


def _reader(cls: type[Entity]) -> Reader[Any]:
    found = _readers.get(cls)
    if found is None:
        found = _readers[cls] = entity_reader(cls)
    return found


def _writer(cls: type[Entity]) -> Writer[Any]:
    found = _writers.get(cls)
    if found is None:
        found = _writers[cls] = entity_writer(cls)
    return found


def peek_header(frame: bytes | memoryview) -> tuple[int, int, int]:
    """api_key, api_version, correlation_id from the fixed start of every request header."""
    if len(frame) < 8:
        raise MalformedRequest(f"request of {len(frame)} bytes is shorter than a header")
    api_key, api_version = _I16_I16.unpack_from(frame, 0)
    (correlation_id,) = _I32.unpack_from(frame, 4)
    return api_key, api_version, correlation_id


def decode_request(
    frame: bytes | memoryview, supported: typing.Mapping[int, tuple[int, int]]
) -> DecodedRequest:
    """Parse one request frame (without its 4-byte size prefix).

    ``supported`` maps api key to the (min, max) versions the broker serves. Raises
    UnknownApiKey / UnsupportedVersion (answerable) or MalformedRequest (close).
    """
    api_key, api_version, correlation_id = peek_header(frame)
    if api_key not in supported:
        raise UnknownApiKey(api_key, api_version, correlation_id)
    lo, hi = supported[api_key]
    if not lo <= api_version <= hi:
        raise UnsupportedVersion(api_key, api_version, correlation_id)
    cls = request_class(api_key, api_version)
    what = f"{api_key_map[api_key]} v{api_version} request"
    try:
        # kio's native reader must only see frames whose every length has been checked
        # against the bytes present (broker/kafka/bounds.py, docs/adr/0005).
        checked = bounds.check_request(cls.__header_schema__, cls, bytes(frame))
        header, offset = _reader(cls.__header_schema__)(checked.frame, 0)
        body, _ = _reader(cls)(checked.frame, offset)
    except bounds.BoundsError as e:
        raise MalformedRequest(f"malformed {what}: {e}") from None
    except Exception as e:  # kio raises assorted errors on bad input; all mean "malformed"
        raise MalformedRequest(f"cannot parse {what}: {e!r}") from None
    # Bytes after the last field are ignored, as Kafka brokers do: librdkafka's all-topics
    # Metadata v12 request carries three, and refusing it breaks AdminClient.list_topics.
    return DecodedRequest(api_key, api_version, correlation_id, header.client_id, body)


def encode_request(body: RequestPayload, correlation_id: int, client_id: str | None) -> bytes:
    """A full request frame, size prefix included (used by our own admin client)."""
    cls = type(body)
    header_cls = cls.__header_schema__
    header = build(
        header_cls,
        {
            "request_api_key": cls.__api_key__,
            "request_api_version": cls.__version__,
            "correlation_id": correlation_id,
            "client_id": client_id,
        },
    )
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    _writer(header_cls)(buf, header)
    _writer(cls)(buf, body)
    data = buf.getbuffer()
    _I32.pack_into(data, 0, len(data) - 4)
    return bytes(data)


def decode_response(frame: bytes | memoryview, api_key: int, version: int) -> tuple[int, Any]:
    """(correlation_id, body) from a response frame without its size prefix."""
    cls = response_class(api_key, version)
    header_cls = ResponseHeaderV1 if cls.__flexible__ and api_key != API_VERSIONS_KEY \
        else ResponseHeaderV0
    # A peer's answer gets the same bounds check as a request: a broken or hostile peer
    # must not be able to abort a follower or the admin CLI either.
    try:
        head = bounds.check(header_cls, bytes(frame), 0)
        checked = bounds.check(cls, head.frame, head.end)
        (correlation_id,) = _I32.unpack_from(frame, 0)
        body, _ = _reader(cls)(checked.frame, head.end)
    except Exception as e:  # kio raises assorted errors on bad input; all mean "malformed"
        raise MalformedResponse(
            f"cannot parse {api_key_map[api_key]} v{version} response: {e}") from None
    return correlation_id, body


def _write_head(buf: io.BytesIO | _SplitBuffer, api_key: int, correlation_id: int, body: Payload) -> None:
    """A response's size prefix (zero, filled in once the frame is encoded) and header."""
    buf.write(b"\0\0\0\0")
    buf.write(_I32.pack(correlation_id))
    # ApiVersions responses always use header v0 so a client can parse the answer even
    # when it asked with a version we do not understand (KIP-511).
    if type(body).__flexible__ and api_key != API_VERSIONS_KEY:
        buf.write(b"\0")


def encode_response(api_key: int, version: int, correlation_id: int, body: Payload
                    ) -> memoryview:
    """A full response frame, size prefix included (a view of the encoded buffer: fetch
    responses carry megabytes of records, and copying them once more would cost)."""
    buf = io.BytesIO()
    _write_head(buf, api_key, correlation_id, body)
    _writer(type(body))(buf, body)
    data = buf.getbuffer()
    _I32.pack_into(data, 0, len(data) - 4)
    return data.toreadonly()


class OutOfBand(typing.Protocol):
    """A value of a ``records`` field whose bytes the codec does not see (a region of a
    segment file, sent by the kernel): only its length is encoded here."""

    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class SplicedFrame:
    """A response frame whose ``parts`` are, in order, encoded bytes and out-of-band
    values: the transport writes the bytes and sends each out-of-band value's own bytes
    in its place. Every length field, the frame's size prefix included, counts them."""

    parts: tuple[memoryview | OutOfBand, ...]
    size: int  # of the whole frame, size prefix included

    def __len__(self) -> int:
        return self.size

    def out_of_band(self) -> list[OutOfBand]:
        return [p for p in self.parts if not isinstance(p, memoryview)]


class _SplitBuffer:
    """What kio's writers write into: bytes go to the current piece; any other value (kio
    passes a ``records`` value to ``write`` as it is, after writing ``len()`` of it as the
    length) ends the piece and is kept as a part of its own."""

    def __init__(self) -> None:
        self.done: list[memoryview | OutOfBand] = []
        self.piece = io.BytesIO()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview | OutOfBand) -> int:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self.piece.write(data)
        self._end_piece()
        self.done.append(data)
        self.size += len(data)
        return len(data)

    def _end_piece(self) -> None:
        if self.piece.tell():
            view = self.piece.getbuffer()
            self.done.append(view)
            self.size += len(view)
            self.piece = io.BytesIO()

    def parts(self) -> tuple[memoryview | OutOfBand, ...]:
        self._end_piece()
        return tuple(self.done)


def encode_spliced_response(api_key: int, version: int, correlation_id: int, body: Payload
                            ) -> memoryview | SplicedFrame:
    """``encode_response`` for a body whose ``records`` fields may hold OutOfBand values:
    a SplicedFrame when one does, else the frame as ``encode_response`` makes it. (A
    function of its own: the split buffer costs every ``write`` a Python call.)"""
    buf = _SplitBuffer()
    _write_head(buf, api_key, correlation_id, body)
    # kio types its writers' buffer as IO[bytes]; they only ever call ``write``.
    _writer(type(body))(typing.cast(typing.IO[bytes], buf), body)
    parts = buf.parts()
    first = parts[0]
    assert isinstance(first, memoryview)  # the header is always bytes
    _I32.pack_into(first, 0, buf.size - 4)
    if len(parts) == 1:
        return first.toreadonly()
    return SplicedFrame(tuple(p.toreadonly() if isinstance(p, memoryview) else p
                              for p in parts), buf.size)


# --- building entities from plain data -----------------------------------------------


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    name: str
    kind: str  # entity | entities | timedelta | datetime | error | records | plain
    target: type[Entity] | None
    zero: object
    has_default: bool


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _plan(cls: type[Entity]) -> tuple[_FieldPlan, ...]:
    found = _plans.get(cls)
    if found is None:
        found = _plans[cls] = _make_plan(cls)
    return found


def _make_plan(cls: type[Entity]) -> tuple[_FieldPlan, ...]:
    hints = typing.get_type_hints(cls)
    plans = []
    for f in fields(cls):
        hint, optional = _strip_optional(hints[f.name])
        kafka_type = f.metadata.get("kafka_type")
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        target: type[Entity] | None = None
        zero: object
        if typing.get_origin(hint) is tuple:
            inner = typing.get_args(hint)[0]
            if is_dataclass(inner):
                kind, target, zero = "entities", typing.cast(type[Entity], inner), ()
            else:
                kind, zero = "plain", ()
        elif is_dataclass(hint):
            kind, target, zero = "entity", typing.cast(type[Entity], hint), None
        elif kafka_type in ("timedelta_i32", "timedelta_i64"):
            kind, zero = "timedelta", datetime.timedelta(0)
        elif kafka_type == "datetime_i64":
            kind, zero = "datetime", None
        elif kafka_type == "error_code":
            kind, zero = "error", ErrorCode.none
        elif kafka_type == "records":
            kind, zero = "records", None
        elif kafka_type == "string":
            kind, zero = "plain", None if optional else ""
        elif kafka_type == "bytes":
            kind, zero = "plain", None if optional else b""
        elif kafka_type == "bool":
            kind, zero = "plain", False
        elif kafka_type == "uuid":
            kind, zero = "plain", None
        elif kafka_type == "float64":
            kind, zero = "plain", 0.0
        else:
            kind, zero = "plain", 0
        if optional and kind not in ("entities", "plain"):
            zero = None
        plans.append(_FieldPlan(f.name, kind, target, zero, has_default))
    return tuple(plans)


E = typing.TypeVar("E", bound=Entity)


def build(cls: type[E], data: typing.Mapping[str, Any]) -> E:
    """Instantiate kio entity ``cls`` from ``data``.

    Keys the entity does not have are ignored (older versions lack newer fields); fields
    absent from ``data`` take their schema default or else their zero value. Nested
    entities are given as dicts (or already-built entities), arrays as lists of dicts.
    Integers are accepted for error codes (ErrorCode), durations and timestamps (ms).
    """
    kwargs: dict[str, Any] = {}
    for p in _plan(cls):
        if p.name in data:
            value = data[p.name]
        elif p.has_default:
            continue
        elif p.kind == "entity" and p.target is not None:
            value = {}
        else:
            kwargs[p.name] = p.zero
            continue
        kwargs[p.name] = _convert(p, value)
    return cls(**kwargs)


def _convert(p: _FieldPlan, value: Any) -> Any:
    if value is None:
        return None
    kind = p.kind
    if kind == "plain":
        return tuple(value) if isinstance(value, list) else value
    if kind in ("entities", "entity"):
        target = p.target
        assert target is not None  # set for every entity field by _make_plan
        if kind == "entity":
            return value if is_dataclass(value) else build(target, value)
        return tuple(v if is_dataclass(v) else build(target, v) for v in value)
    if kind == "error":
        return value if isinstance(value, ErrorCode) else ErrorCode(int(value))
    if kind == "timedelta":
        if isinstance(value, datetime.timedelta):
            return value
        return datetime.timedelta(milliseconds=int(value))
    if kind == "datetime":
        if isinstance(value, datetime.datetime):
            return value
        return datetime.datetime.fromtimestamp(int(value) / 1000, tz=datetime.UTC)
    return value


def build_response(api_key: int, version: int, data: typing.Mapping[str, Any]) -> Payload:
    unknown = data.keys() - _response_fields(api_key)
    if unknown:
        # A misspelt field would be dropped without a word (kio names *_ms fields without
        # the suffix: throttle_time, session_lifetime): refuse it instead.
        raise ValueError(f"{api_key_map[api_key]} responses have no field "
                         f"{', '.join(sorted(unknown))} in any version")
    return build(response_class(api_key, version), data)


@cache
def _response_fields(api_key: int) -> frozenset[str]:
    """Top-level field names of ``api_key``'s response in any version kio knows."""
    names: set[str] = set()
    for version in schema_name_map[api_key_map[api_key]]:
        try:
            names |= {f.name for f in fields(response_class(api_key, version))}
        except (KeyError, ImportError):
            continue
    return frozenset(names)


def build_request(api_key: int, version: int, data: typing.Mapping[str, Any]
                  ) -> RequestPayload:
    return build(request_class(api_key, version), data)


def ms(value: datetime.timedelta | datetime.datetime | int | None) -> int:
    """Milliseconds from a kio duration or timestamp (-1 for None)."""
    if value is None:
        return -1
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    if isinstance(value, datetime.datetime):
        return round(value.timestamp() * 1000)
    return int(value)
