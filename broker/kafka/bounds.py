"""Bounds check of a Kafka message before kio's native reader parses it.

kio's native reader sizes an array's storage from the count the message declares before it
checks that the bytes are there: a compact array count of four billion in a 20-byte frame
makes it ask the allocator for 32 GiB, and a failed allocation aborts the whole process
(docs/adr/0005-bounds-check-before-the-native-reader.md). It also hands a null to the
handler where the schema does not allow one, and refuses a tagged field it does not know,
which Kafka's protocol says a reader must skip (KIP-482).

So every frame is first walked here, following the same kio schema the native reader
follows, without building anything:

* every length (string, bytes, records) and every array count must fit in the bytes left in
  the frame, and an array's count times its smallest possible element must fit too;
* the whole message may hold at most ``MAX_ELEMENTS`` array elements, so a large frame of
  tiny elements cannot turn into tens of gigabytes of Python objects;
* a null (length -1, compact 0, nullable-struct marker -1) is refused in a field the schema
  does not mark nullable;
* tagged fields: a known tag's value must take exactly the size its header gives; unknown
  tags are cut out of the frame (``Checked.frame`` is then a rewritten copy) so the native
  reader, which would refuse them, never sees them.

Only when the walk succeeds does the native reader get the frame, and then every length it
reads has been checked against the bytes that are really there. The walk and the native
reader must agree on where each field starts; tests/unit/broker/kafka/test_bounds.py checks
that they consume the same bytes for random messages of every API and version we serve, and
the fuzzer (tests/fuzz) checks it for every input both accept.

Pure logic: no I/O, no asyncio.
"""

from __future__ import annotations

import struct
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from types import NoneType, UnionType

from kio.static.protocol import Entity

# A request with more array elements than this is refused. Kafka has no such bound, but no
# client sends anything near it: a follower fetch of 100,000 partitions is 100,100 elements.
MAX_ELEMENTS = 1_000_000

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")

_FIXED_SIZES: dict[str, int] = {
    "int8": 1, "uint8": 1, "bool": 1,
    "int16": 2, "uint16": 2, "error_code": 2,
    "int32": 4, "uint32": 4, "timedelta_i32": 4,
    "int64": 8, "uint64": 8, "timedelta_i64": 8, "datetime_i64": 8, "float64": 8,
    "uuid": 16,
}
_LENGTH_PREFIXED = frozenset({"string", "bytes", "records"})


class BoundsError(ValueError):
    """The message is malformed: a length runs past the frame, a null where none is allowed,
    a varint too long, too many elements."""


@dataclass(slots=True)
class _Scan:
    """What one walk accumulates: the element budget and the tagged fields to cut out."""

    elements: int = 0
    # (start, end, replacement) byte edits, in frame order.
    edits: list[tuple[int, int, bytes]] | None = None

    def count(self, n: int) -> None:
        self.elements += n
        if self.elements > MAX_ELEMENTS:
            raise BoundsError(f"the message holds more than {MAX_ELEMENTS} array elements")


# A step checks one field (or a run of fixed-size fields) starting at `off` and returns the
# offset just after it.
Step = Callable[[bytes, int, _Scan], int]


@dataclass(frozen=True, slots=True)
class Checked:
    """A frame that passed the check; ``frame`` has unknown tagged fields cut out."""

    frame: bytes
    end: int  # offset just after the message


def check(cls: type[Entity], frame: bytes, offset: int = 0) -> Checked:
    """Walk one message of kio entity ``cls`` starting at ``offset``; raise BoundsError."""
    scan = _Scan()
    try:
        end = _entity_step(cls, False)(frame, offset, scan)
    except (struct.error, IndexError):
        raise BoundsError(f"{cls.__name__}: the frame ends inside a field") from None
    if scan.edits:
        return Checked(_apply(frame, scan.edits), end - sum(e - s - len(r)
                                                            for s, e, r in scan.edits))
    return Checked(frame, end)


def check_request(header_cls: type[Entity], body_cls: type[Entity], frame: bytes) -> Checked:
    """Header then body of a request frame (without its size prefix)."""
    head = check(header_cls, frame, 0)
    body = check(body_cls, head.frame, head.end)
    return body


def _apply(frame: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray()
    pos = 0
    for start, end, replacement in sorted(edits):
        out += frame[pos:start]
        out += replacement
        pos = end
    out += frame[pos:]
    return bytes(out)


# --- primitives ----------------------------------------------------------------------


def read_uvarint(buf: bytes, off: int) -> tuple[int, int]:
    """An unsigned varint of at most 5 bytes and 32 bits, as Kafka's readers accept."""
    value = 0
    for i in range(5):
        b = buf[off + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if value > 0xFFFFFFFF:
                break
            return value, off + i + 1
    raise BoundsError(f"varint at offset {off} is longer than 5 bytes or wider than 32 bits")


def encode_uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fit(buf: bytes, off: int, n: int, what: str) -> int:
    end = off + n
    if end > len(buf):
        raise BoundsError(f"{what} of {n} bytes at offset {off} runs past the end of the "
                          f"frame ({len(buf) - off} bytes left)")
    return end


def _null(what: str) -> BoundsError:
    return BoundsError(f"{what} is null, which its schema does not allow")


def _length_step(kafka_type: str, flexible: bool, nullable: bool, name: str) -> Step:
    if flexible:
        def compact(buf: bytes, off: int, scan: _Scan) -> int:
            n, off = read_uvarint(buf, off)
            if n == 0:
                if not nullable:
                    raise _null(name)
                return off
            return _fit(buf, off, n - 1, name)

        return compact
    # A legacy string's length is an int16, legacy bytes' and records' an int32.
    prefix = _I16 if kafka_type == "string" else _I32

    def legacy(buf: bytes, off: int, scan: _Scan) -> int:
        (n,) = prefix.unpack_from(buf, off)
        off += prefix.size
        if n < 0:
            if n == -1 and nullable:
                return off
            raise _null(name) if n == -1 else BoundsError(f"{name}: length {n}")
        return _fit(buf, off, n, name)

    return legacy


def _skip(n: int) -> Step:
    def skip(buf: bytes, off: int, scan: _Scan) -> int:
        end = off + n
        if end > len(buf):
            raise BoundsError(f"the frame ends inside a field at offset {off}")
        return end

    return skip


# --- schema walk ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kafka_type: str | None  # None for entities
    entity: type[Entity] | None
    array: bool
    nullable: bool
    tag: int | None


def _describe(cls: type[Entity]) -> list[_Field]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        hint = hints[f.name]
        nullable = False
        if typing.get_origin(hint) in (UnionType, typing.Union):
            args = [a for a in typing.get_args(hint) if a is not NoneType]
            nullable = len(args) < len(typing.get_args(hint))
            hint = args[0]
        array = typing.get_origin(hint) is tuple
        inner = typing.get_args(hint)[0] if array else hint
        entity = typing.cast(type[Entity], inner) if is_dataclass(inner) else None
        kafka_type = None if entity is not None else f.metadata["kafka_type"]
        out.append(_Field(f.name, kafka_type, entity, array, nullable, f.metadata.get("tag")))
    return out


def _min_size(cls: type[Entity]) -> int:
    """Fewest bytes one message of ``cls`` can take (element bound for arrays of it)."""
    flexible = bool(cls.__flexible__)
    total = 1 if flexible else 0  # the tagged-field count
    for f in _describe(cls):
        if f.tag is not None:
            continue
        total += _field_min_size(f, flexible)
    return total


def _field_min_size(f: _Field, flexible: bool) -> int:
    if f.array:
        return 1 if flexible else 4
    if f.entity is not None:
        return 1 if f.nullable else _min_size(f.entity)
    assert f.kafka_type is not None
    if f.kafka_type in _FIXED_SIZES:
        return _FIXED_SIZES[f.kafka_type]
    if flexible:
        return 1
    return 2 if f.kafka_type == "string" else 4


def _fixed_size(f: _Field) -> int | None:
    if f.array or f.entity is not None or f.kafka_type not in _FIXED_SIZES:
        return None
    return _FIXED_SIZES[f.kafka_type]


def _fixed_record(cls: type[Entity]) -> tuple[int, Step | None] | None:
    """(bytes of its fields, its tagged-field step or None) when every untagged field of
    ``cls`` has a fixed size; else None."""
    size = 0
    tagged: dict[int, Step] = {}
    for f in _describe(cls):
        if f.tag is not None:
            tagged[f.tag] = _field_step(f, bool(cls.__flexible__), f"{cls.__name__}.{f.name}",
                                        tagged=True)
            continue
        fixed = _fixed_size(f)
        if fixed is None:
            return None
        size += fixed
    if not cls.__flexible__:
        return size, None
    return size, _tagged_fields_step(cls.__name__, tagged)


def _value_step(f: _Field, flexible: bool, nullable: bool, where: str) -> Step:
    """One value of field ``f`` (an array element when ``f.array``, else the field)."""
    if f.entity is not None:
        return _entity_step(f.entity, nullable)
    assert f.kafka_type is not None
    if f.kafka_type in _LENGTH_PREFIXED:
        return _length_step(f.kafka_type, flexible, nullable, where)
    if f.kafka_type in _FIXED_SIZES:
        return _skip(_FIXED_SIZES[f.kafka_type])
    raise TypeError(f"{where}: no bounds rule for kafka_type {f.kafka_type!r}")


def _array_step(f: _Field, flexible: bool, nullable: bool, where: str) -> Step:
    item = _value_step(f, flexible, False, f"{where}[]")
    item_fixed = _fixed_size(f)
    record = _fixed_record(f.entity) if f.entity is not None else None
    item_min = max(1, item_fixed or (_min_size(f.entity) if f.entity is not None
                                     else _field_min_size(
                                         _Field(f.name, f.kafka_type, None, False, False, None),
                                         flexible)))

    def array(buf: bytes, off: int, scan: _Scan) -> int:
        if flexible:
            n, off = read_uvarint(buf, off)
            n -= 1
        else:
            (n,) = _I32.unpack_from(buf, off)
            off += 4
        if n < 0:
            if n == -1 and nullable:
                return off
            raise _null(where) if n == -1 else BoundsError(f"{where}: array count {n}")
        left = len(buf) - off
        if n * item_min > left:
            raise BoundsError(f"{where}: {n} elements of at least {item_min} bytes each do "
                              f"not fit in the {left} bytes left in the frame")
        scan.count(n)
        if item_fixed is not None:
            return off + n * item_fixed
        if record is not None:
            # Entities of fixed-size fields (a fetch's partitions): skip each at once, and
            # its tagged-field section in one byte when it is empty, as it nearly always is.
            size, tagged = record
            for _ in range(n):
                off += size
                if tagged is None:
                    continue
                if buf[off] == 0:
                    off += 1
                else:
                    off = tagged(buf, off, scan)
            if off > len(buf):
                raise BoundsError(f"{where}: the frame ends inside an element")
            return off
        for _ in range(n):
            off = item(buf, off, scan)
        return off

    return array


def _field_step(f: _Field, flexible: bool, where: str, *, tagged: bool = False) -> Step:
    # kio reads and writes tagged fields as non-nullable: presence is the tag itself.
    nullable = f.nullable and not tagged
    if f.array:
        return _array_step(f, flexible, nullable, where)
    return _value_step(f, flexible, nullable, where)


_steps: dict[tuple[type[Entity], bool], Step] = {}


def _entity_step(cls: type[Entity], nullable: bool) -> Step:
    """The check of one message of ``cls`` (compiled once per class)."""
    found = _steps.get((cls, nullable))
    if found is None:
        found = _steps[(cls, nullable)] = _compile_entity(cls, nullable)
    return found


def _compile_entity(cls: type[Entity], nullable: bool) -> Step:
    name = cls.__name__
    flexible = bool(cls.__flexible__)
    is_request_header = name == "RequestHeader"
    steps: list[Step] = []
    tagged: dict[int, Step] = {}
    run = 0  # bytes of consecutive fixed-size fields, checked as one skip
    for f in _describe(cls):
        where = f"{name}.{f.name}"
        if f.tag is not None:
            tagged[f.tag] = _field_step(f, flexible, where, tagged=True)
            continue
        if is_request_header and f.name == "client_id":
            # Kafka keeps the header's client id a legacy nullable string in every version.
            step = _length_step("string", False, True, where)
        else:
            size = _fixed_size(f)
            if size is not None:
                run += size
                continue
            step = _field_step(f, flexible, where)
        if run:
            steps.append(_skip(run))
            run = 0
        steps.append(step)
    if run:
        steps.append(_skip(run))
    if flexible:
        steps.append(_tagged_fields_step(name, tagged))
    body = tuple(steps)

    def entity(buf: bytes, off: int, scan: _Scan) -> int:
        for step in body:
            off = step(buf, off, scan)
        return off

    if not nullable:
        return entity

    def nullable_entity(buf: bytes, off: int, scan: _Scan) -> int:
        # KIP-893: a nullable struct is an int8 marker, -1 null or 1 present, then the struct.
        (marker,) = _I8.unpack_from(buf, off)
        if marker == -1:
            return off + 1
        if marker != 1:
            raise BoundsError(f"{name}: nullable struct marker {marker} is neither -1 nor 1")
        return entity(buf, off + 1, scan)

    return nullable_entity


def _tagged_fields_step(name: str, known: dict[int, Step]) -> Step:
    def tagged_fields(buf: bytes, off: int, scan: _Scan) -> int:
        start = off
        n, off = read_uvarint(buf, off)
        count_end = off
        if 2 * n > len(buf) - off:
            raise BoundsError(f"{name}: {n} tagged fields do not fit in the frame")
        unknown = 0
        for _ in range(n):
            tag_start = off
            tag, off = read_uvarint(buf, off)
            size, off = read_uvarint(buf, off)
            end = _fit(buf, off, size, f"{name} tagged field {tag}")
            step = known.get(tag)
            if step is None:
                # Unknown tags must be skipped (KIP-482); kio would refuse them: cut them out.
                unknown += 1
                _edit(scan, tag_start, end, b"")
            elif step(buf, off, scan) != end:
                raise BoundsError(f"{name} tagged field {tag}: its value does not take the "
                                  f"{size} bytes its header gives")
            off = end
        if unknown:
            _edit(scan, start, count_end, encode_uvarint(n - unknown))
        return off

    return tagged_fields


def _edit(scan: _Scan, start: int, end: int, replacement: bytes) -> None:
    if scan.edits is None:
        scan.edits = []
    scan.edits.append((start, end, replacement))


