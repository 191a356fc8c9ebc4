"""encode_spliced_response: a frame with out-of-band record values encodes their lengths
as kio does for bytes, so that the parts, with each value's bytes in its place, are the
frame encode_response makes of the same answer with the bytes inline."""

from __future__ import annotations

import pytest

from odradek.broker.kafka import codec


class Blob:
    """An out-of-band value: only its length is the codec's business."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)


def _answer(version: int, records: list[object]) -> object:
    return codec.build_response(1, version, {"responses": [{
        "topic": "t", "topic_id": None,
        "partitions": [{"partition_index": i, "records": r} for i, r in enumerate(records)],
    }]})


@pytest.mark.parametrize("version", [4, 11, 12, 16, 18])
def test_parts_in_place_are_the_plain_frame(version: int) -> None:
    blobs = [Blob(bytes(range(256)) * 700), Blob(b"x" * 130), Blob(b"y" * 200_000)]
    values: list[object] = [blobs[0], b"small inline", blobs[1], b"", blobs[2]]
    plain = codec.encode_response(1, version, 7, _answer(  # type: ignore[arg-type]
        version, [v.data if isinstance(v, Blob) else v for v in values]))
    spliced = codec.encode_spliced_response(1, version, 7, _answer(  # type: ignore[arg-type]
        version, values))
    assert isinstance(spliced, codec.SplicedFrame)
    assert spliced.out_of_band() == blobs  # in order, each once
    joined = b"".join(bytes(p) if isinstance(p, memoryview) else p.data  # type: ignore[union-attr]
                      for p in spliced.parts)
    assert joined == bytes(plain)
    assert len(spliced) == len(plain)


def test_without_out_of_band_values_it_is_the_plain_frame() -> None:
    body = _answer(12, [b"abc", b""])
    assert bytes(codec.encode_spliced_response(1, 12, 3, body)) == bytes(  # type: ignore[arg-type]
        codec.encode_response(1, 12, 3, body))  # type: ignore[arg-type]
