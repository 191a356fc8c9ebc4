"""What the fuzzer does with one input: frame it, decode it, dispatch it, check the oracles.

An input is the byte stream a client would send on one connection: size-prefixed request
frames, back to back (the seeds in corpus/seeds are exactly that). It goes through the same
pieces a real connection goes through, in the same order (broker/server.py):

1. ``ServerConnection.receive_data``, in up to four chunks whose boundaries are chosen by
   the input (a CRC of it), so frames also arrive split across reads;
2. for each frame, ``ServerConnection.decode`` (bounds walk, then kio's native reader);
3. each decoded request goes to its real handler from ``node.apis`` on a real in-process
   node (tests/fuzz/node_host.py) and its response is encoded. A handler gets a short
   time budget; one still running after it (a long poll) goes on in the background, as a
   request of another connection would, and is checked when it ends.
   Two values a fuzzer cannot guess are filled in first: the CRC of a produce request's
   record batch whose CRC field is zero (batch_crc.py), and a group member id written as
   "@", which becomes the id the node last handed out (member_ids.py).

A protocol violation ends the input, as it closes a real connection. Oracles, each raising
so that libFuzzer records the input as a crash:

* framing and decoding raise nothing: malformed input is a ``ProtocolViolation`` event;
* the bounds walk and the native reader agree on every frame (walk_agreement.py);
* no handler raises, and every response it builds encodes: a handler answers odd requests
  with Kafka error codes;
* a client's produce to an internal topic (__consumer_offsets) is refused, as in Kafka;
* the node logs no exception with a traceback while handling the input (a failed
  background task of the group coordinator, for one), nor when it is restarted on the
  data the inputs left (node_host.py, at each recycle).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import zlib

from kio.schema.errors import ErrorCode

from odradek.broker.handlers.api import CloseConnection, RequestContext
from odradek.broker.handlers.meta import INTERNAL_TOPICS
from odradek.broker.kafka import codec
from odradek.broker.kafka.connection import (
    FrameReceived,
    ProtocolViolation,
    RequestReceived,
    ServerConnection,
    VersionRejected,
)
from tests.fuzz.batch_crc import PRODUCE_KEY, with_batch_crcs
from tests.fuzz.member_ids import MemberIds
from tests.fuzz.node_host import NodeHost, quiet_node_logs
from tests.fuzz.walk_agreement import check_walk_agrees

# Larger than any input libFuzzer makes (-max_len), so a size prefix above it is refused by
# the same rule as socket.request.max.bytes, and one below it waits for the rest.
MAX_REQUEST_BYTES = 1 << 20
# Requests of one input that reach a handler; a stream of many tiny frames would otherwise
# turn one input into a long run of dispatches.
MAX_DISPATCH_PER_INPUT = 8


class Finding(AssertionError):
    """An oracle failed: a bug, not a malformed input. ``origin`` is the input that caused
    it when that is not the one running (a request that went on in the background)."""

    def __init__(self, message: str, origin: bytes | None = None) -> None:
        super().__init__(message)
        self.origin = origin


class _ExceptionLog(logging.Handler):
    """Keeps the node's log records that carry an exception; drops the rest."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


def chunks(data: bytes) -> list[bytes]:
    """``data`` cut in 1 to 4 pieces at points derived from its CRC: deterministic per input,
    and a mutation anywhere moves the cuts."""
    if len(data) < 2:
        return [data]
    h = zlib.crc32(data)
    cuts = sorted({(h >> (8 * i + 2)) % len(data) for i in range(h & 3)} - {0})
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    return pieces


class FuzzTarget:
    def __init__(self, host: NodeHost | None = None, budget_s: float = 0.005,
                 dispatch: bool = True) -> None:
        quiet_node_logs()
        self.host = host or NodeHost()
        self.budget_s = budget_s
        self.dispatch = dispatch
        self.supported = {k: (s.min_version, s.max_version)
                          for k, s in self.host.node.apis.items()}
        self.stats: collections.Counter[str] = collections.Counter()
        self._conn_id = 0
        self._current = b""
        # Handlers still running (long polls), with the input that sent their request.
        self._running: dict[asyncio.Task[None], bytes] = {}
        self._members = MemberIds()
        self._exceptions = _ExceptionLog()
        root = logging.getLogger()
        root.addHandler(self._exceptions)
        self._root_level = root.level
        root.setLevel(logging.ERROR)

    def close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self._exceptions)
        root.setLevel(self._root_level)
        self.host.close()

    # --- one input ---------------------------------------------------------------------

    def __call__(self, data: bytes) -> None:
        self.stats["inputs"] += 1
        self._conn_id += 1
        self._current = data
        self._exceptions.records.clear()
        conn = ServerConnection(self.supported, MAX_REQUEST_BYTES)
        dispatched = 0
        for piece in chunks(data):
            for event in conn.receive_data(piece):
                if isinstance(event, ProtocolViolation):
                    self.stats["framing-violation"] += 1
                    return self._check_log(data)
                if not isinstance(event, FrameReceived):
                    raise Finding(f"receive_data returned {event!r}")
                self.stats["frames"] += 1
                self.stats["walk-" + check_walk_agrees(event.frame, self.supported)] += 1
                decoded = conn.decode(event.frame)
                if isinstance(decoded, ProtocolViolation):
                    self.stats["decode-violation"] += 1
                    return self._check_log(data)
                if isinstance(decoded, VersionRejected):
                    self.stats["version-rejected"] += 1
                    self._answer_version_rejected(decoded)
                    continue
                if not isinstance(decoded, RequestReceived):
                    raise Finding(f"decode returned {decoded!r}")
                self.stats["decoded"] += 1
                if self.dispatch and dispatched < MAX_DISPATCH_PER_INPUT:
                    dispatched += 1
                    self._dispatch(decoded, data)
        self._check_log(data)

    def _answer_version_rejected(self, ev: VersionRejected) -> None:
        # What the server answers (KIP-511): ApiVersions v0 with the versions we serve.
        body = codec.build_response(codec.API_VERSIONS_KEY, 0, {
            "error_code": ErrorCode.unsupported_version,
            "api_keys": self.host.node.api_versions_list()})
        codec.encode_response(codec.API_VERSIONS_KEY, 0, ev.correlation_id, body)

    def _dispatch(self, event: RequestReceived, data: bytes) -> None:
        req = event.request
        self.stats[f"api-{req.api_key}"] += 1
        task = self.host.loop.create_task(self._handle(req))
        self._running[task] = data
        # Most handlers finish within the budget. A long poll (a fetch waiting for data,
        # a JoinGroup waiting for the rebalance) may take seconds: it goes on in the
        # background, as a request on another connection would, while the next inputs
        # run, and is checked whenever it ends (or cancelled with its node).
        self.host.run(asyncio.wait({task}, timeout=self.budget_s))
        if not task.done():
            self.stats["handler-backgrounded"] += 1
        self._reap()
        if self.host.after_dispatch(len(self._running)):
            # The node was replaced: its handlers ended (woken or cancelled by its stop).
            self._reap()
            self._running.clear()

    async def _handle(self, req: codec.DecodedRequest) -> None:
        node = self.host.node
        spec = node.apis[req.api_key]
        ctx = RequestContext(req.api_key, req.api_version, req.correlation_id, req.client_id,
                             "127.0.0.1", self._conn_id, "PLAINTEXT")
        what = f"handler for api_key={req.api_key} v{req.api_version}"
        body = self._members.substitute(req.api_key, with_batch_crcs(req.api_key, req.body))
        try:
            response = await spec.handler(node, ctx, body)
        except CloseConnection:
            return  # no answer is owed (acks=0): the transport closes the connection
        except Exception as e:
            raise Finding(f"{what} raised {e!r} instead of answering with an error code\n"
                          f"request: {body!r}") from e
        if response is None:
            return
        self._members.learn(req.api_key, response)
        if req.api_key == PRODUCE_KEY:
            for t in response.responses:
                if t.name in INTERNAL_TOPICS and any(
                        p.error_code == ErrorCode.none for p in t.partition_responses):
                    raise Finding(f"a client's produce to {t.name} was accepted (Kafka "
                                  f"refuses writes to internal topics)\nrequest: {body!r}")
        try:
            codec.encode_response(req.api_key, req.api_version, req.correlation_id, response)
        except Exception as e:
            raise Finding(f"{what} built a response that does not encode: {e!r}\n"
                          f"request: {body!r}\nresponse: {response!r}") from e

    def _reap(self) -> None:
        """Check the handlers that ended, this input's and earlier ones'."""
        for task, data in list(self._running.items()):
            if not task.done():
                continue
            del self._running[task]
            if task.cancelled():
                continue
            error = task.exception()
            if error is None:
                continue
            if data is not self._current:
                # Found now, caused by an earlier input: name that one (the fuzzer saves it).
                raise Finding(f"{error}\n(a request of an earlier input, still running in "
                              "the background when this input came)", origin=data) from error
            raise error

    def _check_log(self, data: bytes) -> None:
        if not self._exceptions.records:
            return
        record = self._exceptions.records[0]
        self._exceptions.records.clear()
        formatted = logging.Formatter().format(record)
        raise Finding(f"the node logged an exception while handling this input:\n{formatted}")
