"""Broker sessions (leases) kept by the active controller, without I/O.

A broker holds a session while its heartbeats keep arriving within the session timeout. The
rules, following Kafka's BrokerHeartbeatManager:

- A broker registers fenced. A heartbeat unfences it once the broker has applied the metadata
  log up to its own registration record (its epoch) and does not ask to stay fenced.
- A session that sees no heartbeat for `session_timeout` expires; the controller fences the
  broker, which moves its leaderships away.
- A new active controller knows nothing of the old one's timers, so it gives every registered
  unfenced broker a fresh full session (`reset`) before expiring anyone; except a broker
  whose node's connection to this controller was lost (in a combined node, the process of
  the dead controller itself): its session starts cut to `suspect_grace`, as if its
  liveness stream had closed, and opening one gives it the full session.
- Controlled shutdown: a heartbeat with want_shutdown marks the session as shutting down for
  good (this registration is never unfenced again); the controller moves the broker's
  leaderships and ISR places away (Kafka's InControlledShutdown: it stays unfenced, so clients
  keep it in their broker lists while they move to the new leaders) and tells it to stop once
  it leads no partition. It is fenced `disconnect_grace` after its liveness stream ends (the
  process stopped), or at its session timeout.
- Crash detection (beyond Kafka): a broker process holds a liveness stream open to the active
  controller. When the last stream of a registration ends (the kernel closes a dead process's
  connections at once), the session is cut to `disconnect_grace` unless a stream opens again
  (a live broker reopens it at once); heartbeats then only extend it by the grace. The
  controller also tries to connect to the broker's inter-broker listener: refused, the process
  is gone (`process_gone`) and its leaderships move at once as in a controlled shutdown; it
  stays listed until its session timeout unless a new process of it registers first. A paused
  or cut-off broker closes nothing, so only its session timeout fences it.

The class decides; the servicer runs the fence/unfence operations it asks for. Time comes
from an injected clock (seconds) so tests need not sleep. It also keeps what an operator
needs to see that brokers are not close to being fenced by mistake: the gaps between a
broker's heartbeats as they reach this controller (``HeartbeatGaps``), and why brokers were
fenced.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from odradek.controller.metadata import MetadataImage

Clock = Callable[[], float]

DEFAULT_SESSION_TIMEOUT_MS = 9000
DEFAULT_HEARTBEAT_INTERVAL_MS = 2000
DEFAULT_DISCONNECT_GRACE_MS = 300


class HeartbeatAction(enum.Enum):
    NONE = "none"
    FENCE = "fence"
    UNFENCE = "unfence"
    CONTROLLED_SHUTDOWN = "controlled_shutdown"


@dataclass(frozen=True)
class HeartbeatDecision:
    error_code: int
    error_message: str | None = None
    action: HeartbeatAction = HeartbeatAction.NONE
    is_caught_up: bool = False


@dataclass
class _Session:
    epoch: int
    deadline: float
    shutting_down: bool = False
    streams: int = 0  # liveness streams open for this registration
    disconnected: bool = False  # it held a stream and lost the last one
    last_heartbeat: float | None = None
    grace: float = 0.0  # what a heartbeat extends a disconnected session by
    gone: bool = False  # its process is known to be gone: fenced at the deadline, come what may


# Upper bounds (seconds) of the heartbeat gap histogram: around the default 0.5 s interval,
# up to past the default 2 s session timeout.
GAP_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, float("inf"))


@dataclass
class HeartbeatGaps:
    """Time between consecutive heartbeats of each broker as this controller received
    them: a histogram (cumulative buckets, Prometheus style) and the longest one."""

    buckets: dict[int, list[int]]
    total: dict[int, float]
    longest: dict[int, float]

    @classmethod
    def empty(cls) -> HeartbeatGaps:
        return cls({}, {}, {})

    def observe(self, broker_id: int, gap: float) -> None:
        counts = self.buckets.setdefault(broker_id, [0] * len(GAP_BUCKETS))
        for i, bound in enumerate(GAP_BUCKETS):
            if gap <= bound:
                counts[i] += 1
        self.total[broker_id] = self.total.get(broker_id, 0.0) + gap
        self.longest[broker_id] = max(self.longest.get(broker_id, 0.0), gap)


def leads_any(image: MetadataImage, broker_id: int) -> bool:
    return any(
        partition.leader == broker_id
        for topic in image.topics.values()
        for partition in topic.partitions.values()
    )


class BrokerSessions:
    def __init__(
        self, session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS, clock: Clock = time.monotonic,
        disconnect_grace_ms: int = DEFAULT_DISCONNECT_GRACE_MS,
    ) -> None:
        if session_timeout_ms <= 0:
            raise ValueError(f"broker.session.timeout.ms must be > 0; got {session_timeout_ms}")
        self.session_timeout = session_timeout_ms / 1000
        # 0 turns crash detection off: only the session timeout fences.
        self.disconnect_grace = min(disconnect_grace_ms / 1000, self.session_timeout)
        self._clock = clock
        self._sessions: dict[int, _Session] = {}
        self.gaps = HeartbeatGaps.empty()
        # Brokers this controller fenced, by why: "session_timeout" (no heartbeat in time),
        # "process_gone" (liveness stream closed, not reopened within the grace).
        self.fenced_by_reason: dict[str, int] = {}

    def __contains__(self, broker_id: int) -> bool:
        return broker_id in self._sessions

    def epoch_of(self, broker_id: int) -> int | None:
        """The registration epoch the broker's session is for, if it has one."""
        session = self._sessions.get(broker_id)
        return None if session is None else session.epoch

    def is_shutting_down(self, broker_id: int) -> bool:
        session = self._sessions.get(broker_id)
        return session is not None and session.shutting_down

    def registered(self, broker_id: int, epoch: int) -> None:
        """A registration committed with `epoch`: a new session (a retried registration with
        the same epoch just renews the existing one)."""
        session = self._sessions.get(broker_id)
        deadline = self._clock() + self.session_timeout
        if session is not None and session.epoch == epoch:
            session.deadline = deadline
        else:
            self._sessions[broker_id] = _Session(epoch, deadline)

    def heartbeat(
        self,
        image: MetadataImage,
        broker_id: int,
        epoch: int,
        metadata_offset: int,
        *,
        want_fence: bool = False,
        want_shutdown: bool = False,
    ) -> HeartbeatDecision:
        broker = image.brokers.get(broker_id)
        if broker is None:
            return HeartbeatDecision(
                ErrorCode.broker_id_not_registered,
                f"Broker {broker_id} is not registered; register before heartbeating.",
            )
        if broker.epoch != epoch:
            return HeartbeatDecision(
                ErrorCode.stale_broker_epoch,
                f"Broker {broker_id} heartbeated with epoch {epoch}, but its current "
                f"registration has epoch {broker.epoch}; register again.",
            )
        session = self._sessions.get(broker_id)
        if session is None or session.epoch != epoch:
            session = self._sessions[broker_id] = _Session(epoch, 0.0)
        now = self._clock()
        if session.last_heartbeat is not None:
            self.gaps.observe(broker_id, now - session.last_heartbeat)
        session.last_heartbeat = now
        # A broker that lost its liveness stream must open it again to get a full session: a
        # heartbeat sent just before its process died may arrive after the stream ended.
        if not session.gone:
            session.deadline = now + (
                session.grace if session.disconnected else self.session_timeout)
        if want_shutdown:
            session.shutting_down = True
        caught_up = metadata_offset >= broker.epoch
        if want_fence:
            action = HeartbeatAction.FENCE if not broker.fenced else HeartbeatAction.NONE
        elif session.shutting_down:
            action = (HeartbeatAction.CONTROLLED_SHUTDOWN
                      if broker.usable else HeartbeatAction.NONE)
        elif broker.fenced and caught_up:
            action = HeartbeatAction.UNFENCE
        else:
            action = HeartbeatAction.NONE
        return HeartbeatDecision(ErrorCode.none, None, action, caught_up)

    def liveness_opened(self, image: MetadataImage, broker_id: int, epoch: int) -> int:
        """A liveness stream of the broker's registration `epoch` opened: proof of life, a
        full session. Returns a Kafka error code (the registration must be current)."""
        broker = image.brokers.get(broker_id)
        if broker is None:
            return ErrorCode.broker_id_not_registered
        if broker.epoch != epoch:
            return ErrorCode.stale_broker_epoch
        session = self._sessions.get(broker_id)
        if session is None or session.epoch != epoch:
            session = self._sessions[broker_id] = _Session(epoch, 0.0)
        session.streams += 1
        if session.gone:
            return ErrorCode.none  # its leaderships moved already; it is fenced at the deadline
        session.disconnected = False
        session.deadline = max(session.deadline, self._clock() + self.session_timeout)
        return ErrorCode.none

    def liveness_closed(self, broker_id: int, epoch: int) -> bool:
        """A liveness stream ended; True when it was the registration's last and the session
        is now cut to the grace (the caller should check expiry at that time)."""
        session = self._sessions.get(broker_id)
        if session is None or session.epoch != epoch or session.streams <= 0:
            return False
        session.streams -= 1
        if session.streams:
            return False
        grace = self.disconnect_grace
        if grace <= 0:
            if not session.shutting_down:
                return False
            grace = 0.0  # it said it was going, and it is gone
        # A broker stopped after its controlled shutdown stays listed for the grace too:
        # clients that refresh their metadata meanwhile learn the new leaders while it is
        # still in their broker lists (librdkafka loses a partition it is moving when both
        # change in one answer).
        session.disconnected = True
        session.grace = grace
        session.deadline = min(session.deadline, self._clock() + grace)
        return True

    def process_gone(self, broker_id: int, epoch: int) -> bool:
        """The broker's process is known to be gone (its listener refused a connection after
        its liveness stream ended). True when the caller should move its leaderships away
        now, as in a controlled shutdown. The broker then stays listed until its session
        timeout, as Kafka lists a dead broker, and is fenced then whatever it sends: clients
        that learn of the new leaders while the old broker is still listed move at once,
        while librdkafka, told of both in one Metadata answer, drops the partition and asks
        again a second later (and its admin client could hang on the removed broker). A new
        process of the same broker need not wait for that (`take_gone`). A broker that
        reopened a stream, registered again, or is stopping after its own controlled
        shutdown is left alone."""
        session = self._sessions.get(broker_id)
        if (session is None or session.epoch != epoch or not session.disconnected
                or session.streams or session.shutting_down or session.gone):
            return False
        session.gone = True
        since = session.last_heartbeat if session.last_heartbeat is not None else self._clock()
        session.deadline = max(session.deadline, since + self.session_timeout)
        return True

    def take_gone(self, broker_id: int) -> int | None:
        """The registration epoch of the broker's session if its process is known to be gone,
        ending that session (counted as fenced for `process_gone`): a new process of the
        broker is registering, and the caller fences the old registration first."""
        session = self._sessions.get(broker_id)
        if session is None or not session.gone:
            return None
        del self._sessions[broker_id]
        self.fenced_by_reason["process_gone"] = self.fenced_by_reason.get("process_gone", 0) + 1
        return session.epoch

    def known_gone(self) -> set[int]:
        """Brokers whose process is known to be gone (`process_gone`)."""
        return {b for b, session in self._sessions.items() if session.gone}

    def disconnected(self) -> set[int]:
        """Brokers whose session is cut short because their liveness stream ended."""
        return {b for b, session in self._sessions.items() if session.disconnected}

    def should_shutdown(self, image: MetadataImage, broker_id: int) -> bool:
        """A shutting-down broker may stop once it is out of use (in controlled shutdown, or
        fenced) and leads nothing."""
        broker = image.brokers.get(broker_id)
        if broker is None:
            return True  # unregistered: nothing left to hand over
        return (self.is_shutting_down(broker_id) and not broker.usable
                and not leads_any(image, broker_id))

    def expire(self, image: MetadataImage) -> list[tuple[int, int]]:
        """Drop the sessions past their deadline; return (broker id, epoch) of those whose
        broker is still unfenced under that registration, which the caller must fence."""
        now = self._clock()
        to_fence = []
        for broker_id, session in list(self._sessions.items()):
            if session.deadline > now:
                continue
            del self._sessions[broker_id]
            broker = image.brokers.get(broker_id)
            if broker is not None and broker.epoch == session.epoch and not broker.fenced:
                to_fence.append((broker_id, session.epoch))
                if session.shutting_down:
                    continue  # a controlled shutdown ending: not a failure
                reason = ("process_gone" if session.disconnected or session.gone
                          else "session_timeout")
                self.fenced_by_reason[reason] = self.fenced_by_reason.get(reason, 0) + 1
        return to_fence

    def track_unfenced(self, image: MetadataImage) -> None:
        """Give a fresh session to every unfenced broker that has none under its current
        registration, so that each can be expired; sessions of registrations that are gone
        are dropped."""
        deadline = self._clock() + self.session_timeout
        for broker_id, session in list(self._sessions.items()):
            broker = image.brokers.get(broker_id)
            if broker is None or broker.epoch != session.epoch:
                del self._sessions[broker_id]
        for broker in image.brokers.values():
            if not broker.fenced and broker.id not in self._sessions:
                self._sessions[broker.id] = _Session(broker.epoch, deadline)

    def reset(self, image: MetadataImage, suspects: frozenset[int] = frozenset(),
              suspect_grace: float = 0.0) -> None:
        """Called when this controller becomes active: every registered unfenced broker gets
        a fresh full session, since this controller cannot know when they last heartbeated;
        ``suspects`` (brokers whose node this controller has lost its connection to) get
        ``suspect_grace`` to open a liveness stream here, and heartbeats extend theirs by
        as much until they do."""
        self._sessions.clear()
        self.track_unfenced(image)
        if self.disconnect_grace <= 0:
            return
        grace = min(max(suspect_grace, self.disconnect_grace), self.session_timeout)
        deadline = self._clock() + grace
        for broker_id in suspects:
            session = self._sessions.get(broker_id)
            if session is not None:
                session.disconnected = True
                session.grace = grace
                session.deadline = min(session.deadline, deadline)

    def clear(self) -> None:
        self._sessions.clear()

    def next_deadline(self) -> float | None:
        return min((s.deadline for s in self._sessions.values()), default=None)
