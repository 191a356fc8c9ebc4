"""Framing a large request costs the frame twice (what was received, and the frame handed
out), not three times: a frame may be socket.request.max.bytes (100 MiB) large."""

from __future__ import annotations

import struct
import tracemalloc

from odradek.broker.kafka.connection import FrameReceived, ServerConnection


def test_framing_a_large_frame_copies_it_once() -> None:
    size = 8 << 20
    wire = struct.pack(">ihhih", size, 3, 12, 1, -1) + b"\x07" * (size - 10)
    conn = ServerConnection({3: (0, 12)}, 16 << 20)
    chunk = 256 << 10
    for off in range(0, len(wire) - chunk, chunk):
        assert conn.receive_data(wire[off:off + chunk]) == []
    last = wire[(len(wire) - 1) // chunk * chunk:]
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        events = conn.receive_data(last)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(events) == 1 and isinstance(events[0], FrameReceived)
    assert events[0].size == size
    # the buffer existed before; the frame is the one new copy (a slice of the bytearray
    # first, then bytes of it, made two)
    assert peak - before < 1.5 * size, (peak - before) / size
    assert conn.buffered == 0
