"""The namespaced test network itself: addresses, reachability, each fault, teardown."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from odradek.broker.verify.netns import (
    CLIENT,
    TEST_RANGE,
    Network,
    netem_unavailable_reason,
)
from tests.requirements import require_netns


@pytest.fixture(autouse=True)
def _needs_netns() -> None:
    require_netns()


def matrix(net: Network) -> dict[tuple[object, object], bool]:
    parties: list[object] = [CLIENT, *net.nodes]
    pairs = [(a, b) for a in parties for b in parties if a != b]
    with ThreadPoolExecutor(len(pairs)) as pool:
        got = pool.map(lambda p: net.reachable(p[0], p[1], timeout=0.5), pairs)  # type: ignore[arg-type]
        return dict(zip(pairs, got, strict=True))


def test_addresses_stay_in_the_test_range_and_nothing_routes_off_the_machine() -> None:
    with Network(2) as net:
        for who in (CLIENT, *net.nodes):
            assert ipaddress.ip_address(net.address(who)) in TEST_RANGE
        for node in net.nodes:
            routes = net.run(node, ["ip", "-4", "route", "show"]).stdout
            assert "default" not in routes, routes
            r = net.run(node, ["ip", "route", "get", "192.0.2.1"], check=False)
            assert r.returncode != 0, f"node {node} has a route off its /24: {r.stdout}"
        out = subprocess.run(["ip", "-4", "route", "show", "dev", net.root_link],
                             capture_output=True, text=True, check=True).stdout
        assert out.split()[0] == str(net.subnet), out
        # From the root namespace, a test address outside this run's /24 goes nowhere.
        other = next(h for h in ipaddress.ip_network("198.18.0.0/15").hosts()
                     if h not in net.subnet)
        r = subprocess.run(["ip", "route", "get", str(other)], capture_output=True, text=True)
        assert r.returncode != 0 or "blackhole" in r.stdout, r.stdout
        assert all(matrix(net).values())


def test_isolate_keeps_or_cuts_the_client_path() -> None:
    with Network(3) as net:
        net.isolate(1)
        m = matrix(net)
        assert not m[(1, 2)] and not m[(2, 1)] and not m[(1, 3)] and not m[(3, 1)]
        assert m[(CLIENT, 1)] and m[(1, CLIENT)] and m[(2, 3)] and m[(CLIENT, 2)]
        net.heal()
        net.isolate(1, keep_client=False)
        m = matrix(net)
        assert not m[(CLIENT, 1)] and not m[(1, CLIENT)] and not m[(1, 2)]
        assert m[(CLIENT, 2)] and m[(2, 3)]
        net.heal()
        assert all(matrix(net).values())


def test_partition_into_groups() -> None:
    with Network(3) as net:
        net.partition([1], [2, 3])
        m = matrix(net)
        assert m == {k: (1 not in k or CLIENT in k) for k in m}
        net.heal()
        net.partition([1, CLIENT], [2])  # node 3 is in no group: a group of its own
        m = matrix(net)
        assert m[(1, CLIENT)] and m[(CLIENT, 1)]
        assert not any(m[(a, b)] for a, b in m if a != b and {a, b} != {1, CLIENT})


def test_block_is_one_way() -> None:
    """A one-way cut drops packets in one direction only (seen with UDP; TCP needs both)."""
    with Network(2) as net:
        net.block(1, 2)
        port = 7777
        listener = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                    "s.bind((sys.argv[1],int(sys.argv[2])));s.settimeout(1.5)\n"
                    "try:\n print(s.recv(100).decode())\nexcept OSError:\n print('nothing')\n")
        sender = ("import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                  "for _ in range(20):\n s.sendto(b'hello',(sys.argv[1],int(sys.argv[2])))\n"
                  " time.sleep(0.05)\n")

        def udp(src: int, dst: int) -> str:
            recv = net.popen(dst, [sys.executable, "-c", listener, net.address(dst),
                                   str(port)], stdout=subprocess.PIPE, text=True)
            time.sleep(0.3)
            net.run(src, [sys.executable, "-c", sender, net.address(dst), str(port)])
            out, _ = recv.communicate(10)
            return out.strip()

        assert udp(1, 2) == "nothing"
        assert udp(2, 1) == "hello"
        assert not net.reachable(1, 2, timeout=0.5) and not net.reachable(2, 1, timeout=0.5)
        net.unblock(1, 2)
        assert net.reachable(1, 2)


def test_total_loss_cuts_and_zero_restores() -> None:
    with Network(2) as net:
        net.loss(2, 100)
        assert not net.reachable(1, 2, timeout=0.5) and not net.reachable(CLIENT, 2, timeout=0.5)
        assert net.reachable(CLIENT, 1)
        net.loss(2, 0)
        assert net.reachable(1, 2)


def test_netem_delay_or_a_reason() -> None:
    reason = netem_unavailable_reason()
    if reason is not None:
        # A kernel feature, not a package: CI on this kernel cannot install it either.
        pytest.skip(reason)
    with Network(2) as net:
        net.netem(2, delay_ms=200)
        t0 = time.monotonic()
        assert net.reachable(CLIENT, 2, timeout=3)
        assert time.monotonic() - t0 >= 0.2
        net.heal()


def test_teardown_removes_everything_even_after_a_failure() -> None:
    with pytest.raises(RuntimeError, match="boom"), Network(2) as net:
        sleeper = net.popen(1, ["sleep", "300"])
        names = [net.switch, *(net.ns(n) for n in net.nodes)]
        link, subnet = net.root_link, net.subnet
        raise RuntimeError("boom")
    assert sleeper.poll() is not None, "a process started in a namespace outlived it"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in names if n in listed.split()]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert f" {link}" not in links and f" {link}@" not in links
    addrs = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    assert subnet is not None
    prefix = ".".join(str(subnet.network_address).split(".")[:3]) + "."
    assert prefix not in addrs
