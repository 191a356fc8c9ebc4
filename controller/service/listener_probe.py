"""Is a broker's process gone? Asked when its liveness stream to the controller ends.

A stream can end for a live broker too (a reset connection); a process that died also stops
listening, so a connection to its inter-broker listener is refused at once. Only a refusal
counts: a connection that succeeds (the broker is alive, or already restarted) or that gets
no answer (a paused host, a lost route, a container whose address is gone) says nothing,
and the broker keeps its grace (broker.session.disconnect.grace.ms).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

# (host, port, timeout in seconds) -> True when the connection was refused.
ListenerProbe = Callable[[str, int, float], Awaitable[bool]]


async def refuses_connections(host: str, port: int, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False  # unreachable or silent: not proof that the process is gone
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False
