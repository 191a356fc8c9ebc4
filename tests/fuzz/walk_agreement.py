"""The consistency oracle between the bounds walk and kio's native reader (ADR 0005).

The walk in broker/kafka/bounds.py is only a guard if it reads the same bytes as the native
reader it protects: were they to disagree on where a field starts, a length the walk never
looked at could reach the native reader. So for every frame the walk accepts, the native
reader (run on the walk's output frame, as ``codec.decode_request`` does) must

* stop exactly where the walk says the header and the body end, and
* fail, if at all, only on a *value* (bad UTF-8, an integer out of a type's range), never
  because it ran out of bytes, met a null or a negative length: those are exactly the
  things the walk promises it has checked.

A frame whose unknown tagged fields the walk cut out must walk again unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from kio.serial.errors import BufferUnderflow, NegativeByteLength, UnexpectedNull

from odradek.broker.kafka import bounds, codec

# What the native reader may refuse in a frame the walk accepted: the walk checks lengths,
# counts and nulls, not the contents of strings or the range of durations and enums.
_LENGTH_ERRORS = (BufferUnderflow, NegativeByteLength, UnexpectedNull)


class WalkDisagreement(AssertionError):
    """The bounds walk and kio's native reader read a frame differently."""


def check_walk_agrees(frame: bytes, supported: Mapping[int, tuple[int, int]]) -> str:
    """Raise WalkDisagreement when they differ on ``frame``; else say what happened
    (for the run's statistics): "unserved", "refused", "value-error" or "agreed"."""
    if len(frame) < 8:
        return "unserved"
    api_key, api_version, _ = codec.peek_header(frame)
    served = supported.get(api_key)
    if served is None or not served[0] <= api_version <= served[1]:
        return "unserved"
    cls = codec.request_class(api_key, api_version)
    header_cls = cls.__header_schema__
    try:
        head = bounds.check(header_cls, frame, 0)
        checked = bounds.check_request(header_cls, cls, frame)
    except bounds.BoundsError:
        return "refused"
    what = f"api_key={api_key} v{api_version}"
    try:
        # The native reader returns how many bytes it consumed from the offset given.
        _, header_end = codec._reader(header_cls)(checked.frame, 0)
        _, body_size = codec._reader(cls)(checked.frame, header_end)
        body_end = header_end + body_size
    except _LENGTH_ERRORS as e:
        raise WalkDisagreement(
            f"{what}: the walk accepted the frame but the native reader failed with "
            f"{e!r}") from e
    except Exception:  # noqa: BLE001 - a value the walk does not judge (see above)
        return "value-error"
    if header_end != head.end:
        raise WalkDisagreement(f"{what}: header ends at {head.end} for the walk, at "
                               f"{header_end} for the native reader")
    if body_end != checked.end:
        raise WalkDisagreement(f"{what}: body ends at {checked.end} for the walk, at "
                               f"{body_end} for the native reader")
    if checked.frame is not frame:
        again = bounds.check_request(header_cls, cls, checked.frame)
        if again.frame is not checked.frame or again.end != checked.end:
            raise WalkDisagreement(f"{what}: the frame with unknown tags cut out does not "
                                   "walk again unchanged")
    return "agreed"
