"""Network namespaces for fault injection: one namespace per node, a switch, and cuts on demand.

Layout of one ``Network(n)`` (names carry the creating process's pid and a per-process run
number, so concurrent and leftover runs never collide)::

    root namespace (this process, the "client")
      odk<pid>r<run>  198.18.K.254/24 ─┐
                                       │ veth
    switch namespace odk-<pid>-<run>-sw│
      bridge br0 ── up0 ───────────────┘
                 ├─ p1 ── veth ── eth0 198.18.K.1/24   namespace odk-<pid>-<run>-1
                 ├─ p2 ── veth ── eth0 198.18.K.2/24   namespace odk-<pid>-<run>-2
                 └─ ...

Every packet between two parties crosses the bridge, so one nftables table of the
``bridge`` family in the switch namespace decides who hears whom: a set of
``(source address . destination address)`` pairs is dropped in the forward hook. The
client is just another bridge port, so cutting it works like cutting a node. The rules
live in a namespace of their own, so the machine's own firewall is never touched, and
replacing the set is one nft transaction, so a fault lands atomically.

No traffic can leave the machine: node namespaces have only their /24 on eth0 and no
default route, the switch namespace has no IP address at all, and the root namespace only
gets a connected route for the run's /24, beside a blackhole route for all of
198.18.0.0/15, so nothing aimed at a test address that no run owns leaves the machine. Every address is checked to lie in
198.18.0.0/15 (RFC 2544's benchmarking range) before it is configured.

Nodes are numbered 1..n (node ``i`` has address 198.18.K.i), so node numbers can be the
cluster's node ids. ``CLIENT`` names the root namespace, where the clients run.

Why nftables and not iptables: the kernels we run on build nf_tables in, Debian's
``iptables`` is itself a front end to nf_tables, and a bridge-family set of address pairs
gives atomic, composable cuts with one rule. Packages: ``nftables`` (nft) and ``iproute2``
(ip, tc).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
CLIENT: Literal["client"] = "client"
NS_PREFIX = "odk-"
ROOT_LINK_PREFIX = "odk"
CLIENT_HOST = 254
TABLE = "odradek_faults"

Endpoint = int | Literal["client"]

_runs = itertools.count(1)


class NetnsUnavailable(RuntimeError):
    """This machine or user cannot build namespaced networks; the message says why
    and what to install or change."""


class NetemUnavailable(RuntimeError):
    """``tc qdisc ... netem`` cannot be used here (usually: the kernel lacks sch_netem)."""


# --- environment ------------------------------------------------------------------------


def _run(argv: Sequence[str], *, input: str | None = None, check: bool = True,
         timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def check_environment() -> None:
    """Raise NetnsUnavailable unless namespaced networks can be built here."""
    if not sys.platform.startswith("linux"):
        raise NetnsUnavailable(f"network namespaces need Linux, not {sys.platform}")
    if os.geteuid() != 0:
        raise NetnsUnavailable("network faults need root (ip netns, nft); run as root")
    missing = [tool for tool, pkg in (("ip", "iproute2"), ("tc", "iproute2"),
                                      ("nft", "nftables"))
               if shutil.which(tool) is None]
    if missing:
        raise NetnsUnavailable(
            f"missing {', '.join(missing)}: apt-get install -y iproute2 nftables")
    probe = _run(["ip", "netns", "list"], check=False)
    if probe.returncode != 0:
        raise NetnsUnavailable(f"`ip netns` does not work here: {probe.stderr.strip()}")
    probe = _run(["nft", "list", "tables"], check=False)
    if probe.returncode != 0:
        raise NetnsUnavailable(f"nftables does not work here: {probe.stderr.strip()}")


_netem_reason: list[str | None] = []


def netem_unavailable_reason() -> str | None:
    """None when ``tc qdisc ... netem`` works here, else why not (probed once)."""
    if _netem_reason:
        return _netem_reason[0]
    check_environment()
    name = f"{NS_PREFIX}{os.getpid()}-netem-probe"
    reason: str | None = None
    _run(["ip", "netns", "add", name])
    try:
        r = _run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root",
                  "netem", "delay", "1ms"], check=False)
        if r.returncode != 0:
            reason = (f"tc netem unavailable ({r.stderr.strip()}): this kernel has no "
                      "sch_netem (CONFIG_NET_SCH_NETEM); Network.loss() works without it")
    finally:
        _run(["ip", "netns", "del", name], check=False)
    _netem_reason.append(reason)
    return reason


def _in_test_range(address: str) -> str:
    if ipaddress.ip_address(address) not in TEST_RANGE:
        raise AssertionError(f"refusing to configure {address}: outside {TEST_RANGE}")
    return address


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ns_pids(name: str) -> list[int]:
    r = _run(["ip", "netns", "pids", name], check=False)
    return [int(x) for x in r.stdout.split()] if r.returncode == 0 else []


def _kill_ns_processes(name: str, timeout: float = 10.0) -> None:
    """SIGKILL, by pid, every process still inside one of our own namespaces."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in _ns_pids(name) if p != os.getpid()]
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def cleanup_stale() -> list[str]:
    """Remove namespaces and links left by runs whose process is gone (e.g. SIGKILLed)."""
    removed = []
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if not name.startswith(NS_PREFIX) or len(parts) < 3 or not parts[1].isdigit():
            continue
        if _pid_alive(int(parts[1])):
            continue
        _kill_ns_processes(name)
        _run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    for line in _run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
        fields = line.split(":")
        if len(fields) < 2:
            continue
        link = fields[1].strip().split("@")[0]
        rest = link[len(ROOT_LINK_PREFIX):]
        pid, sep, run = rest.partition("r")
        if link.startswith(ROOT_LINK_PREFIX) and sep and pid.isdigit() and run.isdigit() \
                and not _pid_alive(int(pid)):
            _run(["ip", "link", "del", link], check=False)
            removed.append(link)
    return removed


@contextlib.contextmanager
def _subnet_lock() -> Iterator[None]:
    lock_dir = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
    with open(lock_dir / "odradek-netns.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _used_test_subnets() -> set[ipaddress.IPv4Network]:
    used: set[ipaddress.IPv4Network] = set()
    out = _run(["ip", "-o", "-4", "addr", "show"], check=False).stdout
    out += _run(["ip", "-4", "route", "show"], check=False).stdout
    for word in out.split():
        try:
            net = ipaddress.ip_network(word.split("/")[0] + "/24", strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and net.subnet_of(TEST_RANGE):
            used.add(net)
    return used


# --- the network ------------------------------------------------------------------------


class Network:
    """``n`` node namespaces on one bridge; use as a context manager.

    Faults add to one set of cut (source, destination) pairs; ``heal()`` clears them all.
    """

    def __init__(self, n: int) -> None:
        if not 1 <= n <= 200:
            raise ValueError(f"{n} nodes: a run has 1..200 nodes in its /24")
        self.n = n
        self.run_id = f"{os.getpid()}-{next(_runs)}"
        self.switch = f"{NS_PREFIX}{self.run_id}-sw"
        self.root_link = f"{ROOT_LINK_PREFIX}{self.run_id.replace('-', 'r')}"
        self.subnet: ipaddress.IPv4Network | None = None
        self._cuts: set[tuple[str, str]] = set()
        self._loss: dict[int, float] = {}
        self._netem: set[int] = set()
        self._procs: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []
        self._lock = threading.RLock()
        self._up = False

    # names and addresses

    @property
    def nodes(self) -> list[int]:
        return list(range(1, self.n + 1))

    def ns(self, node: int) -> str:
        self._check_node(node)
        return f"{NS_PREFIX}{self.run_id}-{node}"

    def address(self, who: Endpoint) -> str:
        if self.subnet is None:
            raise RuntimeError("the network is not up: use `with Network(n) as net:`")
        host = CLIENT_HOST if who == CLIENT else self._check_node(who)
        return _in_test_range(str(self.subnet.network_address + host))

    @property
    def client_address(self) -> str:
        return self.address(CLIENT)

    def _check_node(self, node: object) -> int:
        if isinstance(node, bool) or not isinstance(node, int) or not 1 <= node <= self.n:
            raise ValueError(f"{node!r} is not a node of this network (1..{self.n} or CLIENT)")
        return node

    # lifecycle

    def __enter__(self) -> Network:
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        check_environment()
        cleanup_stale()
        # Backstop: a client that outlives its network (or aims at a /24 no run owns) must
        # find no route off the machine. The run's own /24 is more specific and still wins.
        # The route stays after teardown on purpose.
        _run(["ip", "route", "replace", "blackhole", str(TEST_RANGE)])
        with _subnet_lock():
            self.subnet = self._pick_subnet()
            # The root link is created first so the chosen /24 shows up as used at once.
            self._created.append(self.switch)
            _run(["ip", "netns", "add", self.switch])
            _run(["ip", "link", "add", "name", self.root_link, "type", "veth",
                  "peer", "name", "up0", "netns", self.switch])
            _run(["ip", "addr", "add", f"{self.client_address}/24", "dev", self.root_link])
        sw = ["ip", "-n", self.switch]
        _run([*sw, "link", "set", "lo", "up"])
        _run([*sw, "link", "add", "br0", "type", "bridge"])
        _run([*sw, "link", "set", "up0", "master", "br0"])
        for node in self.nodes:
            ns = self.ns(node)
            self._created.append(ns)
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "link", "add", "name", f"p{node}", "netns", self.switch, "type", "veth",
                  "peer", "name", "eth0", "netns", ns])
            _run(["ip", "-n", ns, "addr", "add", f"{self.address(node)}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run([*sw, "link", "set", f"p{node}", "master", "br0"])
            _run([*sw, "link", "set", f"p{node}", "up"])
        _run([*sw, "link", "set", "up0", "up"])
        _run([*sw, "link", "set", "br0", "up"])
        _run(["ip", "link", "set", self.root_link, "up"])
        self._nft(f"""
            table bridge {TABLE} {{
                set cut {{ type ipv4_addr . ipv4_addr; }}
                chain loss {{ }}
                chain forward {{
                    type filter hook forward priority 0; policy accept;
                    ip saddr . ip daddr @cut drop
                    jump loss
                }}
            }}
        """)
        self._up = True
        self._wait_reachable()

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        used = _used_test_subnets()
        candidates = list(TEST_RANGE.subnets(new_prefix=24))
        start = (os.getpid() * 31 + int(self.run_id.split("-")[1])) % len(candidates)
        for i in range(len(candidates)):
            net = candidates[(start + i) % len(candidates)]
            if net not in used:
                return net
        raise RuntimeError(f"every /24 of {TEST_RANGE} is in use on this machine")

    def _wait_reachable(self, timeout: float = 10.0) -> None:
        """The bridge forwards only once its ports leave the listening state."""
        deadline = time.monotonic() + timeout
        pending = set(self.nodes)
        while pending:
            pending = {n for n in pending if not self.reachable(CLIENT, n, timeout=0.3)}
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"nodes {sorted(pending)} unreachable after building the "
                                   f"network {self.subnet}")

    def close(self) -> None:
        """Tear everything down; safe to call more than once and after a failed ``up``."""
        errors = []
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        self._procs.clear()
        for name in self._created:
            if name != self.switch:
                _kill_ns_processes(name)
        r = _run(["ip", "link", "del", self.root_link], check=False)
        if r.returncode != 0 and "Cannot find device" not in r.stderr \
                and "does not exist" not in r.stderr:
            errors.append(r.stderr.strip())
        for name in reversed(self._created):
            r = _run(["ip", "netns", "del", name], check=False)
            if r.returncode != 0 and "No such file" not in r.stderr:
                errors.append(f"{name}: {r.stderr.strip()}")
        self._created.clear()
        self._up = False
        if errors:
            raise RuntimeError("network teardown incomplete: " + "; ".join(errors))

    # running things inside a namespace

    def command(self, node: int, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside ``node``'s namespace (``ip netns exec`` execs, so
        a Popen of it has the command's own pid)."""
        return ["ip", "netns", "exec", self.ns(node), *argv]

    def run(self, node: int, argv: Sequence[str], *, check: bool = True,
            timeout: float = 30.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return _run(self.command(node, argv), check=check, timeout=timeout, input=input)

    def popen(self, node: int, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a process in ``node``'s namespace; it is killed when the network closes."""
        return self.track(subprocess.Popen(self.command(node, argv), **kw))

    def track(self, proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
        self._procs.append(proc)
        return proc

    def reachable(self, src: Endpoint, dst: Endpoint, *, port: int = 9,
                  timeout: float = 1.0) -> bool:
        """Whether a TCP handshake attempt from ``src`` gets any answer from ``dst``: a
        refusal counts, so nothing needs to listen. Needs both directions to work."""
        dst_addr = self.address(dst)
        if src == CLIENT:
            return _tcp_answers(dst_addr, port, timeout)
        code = (f"import socket,sys\ns=socket.socket();s.settimeout({timeout})\n"
                f"try:\n s.connect(({dst_addr!r},{port}))\nexcept ConnectionRefusedError:\n"
                f" pass\nexcept OSError:\n sys.exit(1)\n")
        return self.run(self._check_node(src), [sys.executable, "-c", code], check=False,
                        timeout=timeout + 20).returncode == 0

    # faults

    def _endpoint(self, who: Endpoint) -> str:
        return self.address(who)

    def block(self, src: Endpoint, dst: Endpoint) -> None:
        """Drop every packet from ``src`` to ``dst`` (one way; TCP between them then fails
        in both directions, while e.g. UDP from ``dst`` to ``src`` still arrives)."""
        self.cut([(src, dst)])

    def unblock(self, src: Endpoint, dst: Endpoint) -> None:
        with self._lock:
            self._cuts.discard((self._endpoint(src), self._endpoint(dst)))
            self._sync()

    def cut(self, pairs: Iterable[tuple[Endpoint, Endpoint]]) -> None:
        """Add one-way cuts for each (source, destination) pair, atomically."""
        with self._lock:
            for src, dst in pairs:
                a, b = self._endpoint(src), self._endpoint(dst)
                if a == b:
                    raise ValueError(f"cannot cut {src!r} from itself")
                self._cuts.add((a, b))
            self._sync()

    def isolate(self, node: int, *, keep_client: bool = True) -> None:
        """Cut ``node`` from every other node, both ways; the path to and from the client
        (the root namespace) stays open unless ``keep_client`` is False."""
        node = self._check_node(node)
        others: list[Endpoint] = [n for n in self.nodes if n != node]
        if not keep_client:
            others.append(CLIENT)
        self.cut([p for o in others for p in ((node, o), (o, node))])

    def partition(self, *groups: Iterable[Endpoint]) -> None:
        """Split into ``groups`` that hear only each other, e.g. ``partition([1], [2, 3])``.
        Nodes named in no group form one more group; the client may be put in a group,
        and if it is in none it keeps reaching every node."""
        sets = [set(g) for g in groups]
        for g in sets:
            for who in g:
                self._endpoint(who)
        named = set().union(*sets) if sets else set()
        if len(named) != sum(len(g) for g in sets):
            raise ValueError("a node appears in more than one group")
        rest = {n for n in self.nodes if n not in named}
        if rest:
            sets.append(rest)  # type: ignore[arg-type]
        pairs = [(a, b) for g in sets for h in sets if g is not h for a in g for b in h]
        self.cut(pairs)

    def loss(self, node: int, percent: float) -> None:
        """Drop ``percent`` of the packets to and from ``node`` at random (nftables numgen;
        needs no netem). 0 removes it."""
        node = self._check_node(node)
        if not 0 <= percent <= 100:
            raise ValueError(f"loss {percent}% is not within 0..100")
        with self._lock:
            if percent:
                self._loss[node] = percent
            else:
                self._loss.pop(node, None)
            self._sync()

    def netem(self, node: int, delay_ms: float = 0, loss_pct: float = 0,
              jitter_ms: float = 0) -> None:
        """Delay and/or lose ``node``'s outgoing packets with ``tc qdisc netem`` on its
        eth0. Raises NetemUnavailable (with the reason) where the kernel lacks netem."""
        node = self._check_node(node)
        if not delay_ms and not loss_pct:
            self._clear_netem(node)
            return
        args = ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem"]
        if delay_ms:
            args += ["delay", f"{delay_ms}ms"] + ([f"{jitter_ms}ms"] if jitter_ms else [])
        if loss_pct:
            args += ["loss", f"{loss_pct}%"]
        r = self.run(node, args, check=False)
        if r.returncode != 0:
            raise NetemUnavailable(
                f"tc netem on node {node} failed ({r.stderr.strip()}); the kernel probably "
                "lacks sch_netem (CONFIG_NET_SCH_NETEM). Network.loss() works without it")
        self._netem.add(node)

    def _clear_netem(self, node: int) -> None:
        if node in self._netem:
            self.run(node, ["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
            self._netem.discard(node)

    def heal(self) -> None:
        """Remove every cut, loss and netem: all parties hear each other again."""
        with self._lock:
            self._cuts.clear()
            self._loss.clear()
            self._sync()
            for node in list(self._netem):
                self._clear_netem(node)

    def cuts(self) -> frozenset[tuple[str, str]]:
        """The (source address, destination address) pairs being dropped now."""
        return frozenset(self._cuts)

    def _sync(self) -> None:
        lines = [f"flush set bridge {TABLE} cut", f"flush chain bridge {TABLE} loss"]
        if self._cuts:
            elems = ", ".join(f"{_in_test_range(a)} . {_in_test_range(b)}"
                              for a, b in sorted(self._cuts))
            lines.append(f"add element bridge {TABLE} cut {{ {elems} }}")
        for node, pct in sorted(self._loss.items()):
            per_mille = round(pct * 10)
            addr = self.address(node)
            chance = f"numgen random mod 1000 < {per_mille} " if per_mille < 1000 else ""
            for direction in ("saddr", "daddr"):
                lines.append(f"add rule bridge {TABLE} loss ip {direction} {addr} "
                             f"{chance}drop")
        self._nft("\n".join(lines) + "\n")

    def _nft(self, script: str) -> None:
        _run(["ip", "netns", "exec", self.switch, "nft", "-f", "-"], input=script)


def _tcp_answers(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
