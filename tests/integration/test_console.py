"""The web console (``odradek console``) end to end: a real 3-node cluster, the console
process, and the page in headless Chromium (Debian's package, driven by Playwright), with
screenshots checked by the tests. Set CONSOLE_SCREENSHOTS=<dir> to keep the screenshots
(docs/images/console-*.png come from here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import unique_name
from tests.integration.harness import Cluster, free_port, wait_for, wait_port
from tests.requirements import require, require_tool

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("console"), n=3).start()
    yield c
    c.kill_all()


@pytest.fixture(scope="module")
def console(cluster: Cluster) -> Iterator[str]:
    port = free_port()
    metrics = [a for n in cluster.all_nodes() for a in ("--metrics", f"{n.node_id}={n.metrics_url}")]
    proc = subprocess.Popen([sys.executable, "-m", "odradek.broker.cli.main", "console",
                             "--bootstrap", cluster.bootstrap, *metrics,
                             "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
        assert b"Traceback" not in out, out.decode(errors="replace")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium", "apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install -e '.[test]')")
        raise
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert not errors, f"the page raised: {errors}"


def screenshot(page: Any, name: str, tmp_path: Path) -> Any:
    """Take a screenshot and check it shows a page (not blank, the size asked for); keep
    it under $CONSOLE_SCREENSHOTS when set."""
    from matplotlib.image import imread

    path = tmp_path / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    pixels = imread(str(path))
    assert pixels.shape[:2] == (800, 1280)
    assert pixels.std() > 0.05, f"screenshot {name} is (nearly) blank"
    keep = os.environ.get("CONSOLE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return pixels


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text(timeout=15_000)).strip()


def wait_text(page: Any, selector: str, expected: str, timeout_s: float = 30) -> None:
    wait_for(lambda: page.locator(selector).count() and expected in text(page, selector),
             timeout_s, f"{selector} to show {expected!r}")


def admin(cluster: Cluster) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=10_000)


def test_overview_topics_groups_and_messages(cluster: Cluster, console: str, page: Any,
                                             tmp_path: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    topic, group = unique_name("orders"), unique_name("billing")
    a = admin(cluster)
    a.create_topics([NewTopic(topic, 3, 3)])
    controller = a.describe_cluster()["controller_id"]
    a.close()
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    base = int(time.time() * 1000) - 60_000
    for i in range(6):
        producer.send(topic, partition=0, key=f"customer-{i}".encode(),
                      value=json.dumps({"order": i, "total": 10 * i}).encode(),
                      headers=[("source", b"web")], timestamp_ms=base + i * 1000)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id=group,
                             enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.commit({tp: __import__("kafka").OffsetAndMetadata(2, "", -1)})
    consumer.close()

    # Overview: health, brokers, the controller.
    page.goto(console)
    wait_text(page, "#health-status", "healthy")
    assert page.locator("#brokers tbody tr").count() == 3
    assert text(page, "#controller-id") == str(controller)
    for node_id in (1, 2, 3):
        assert text(page, f'[data-broker-state="{node_id}"]') == "alive"
    screenshot(page, "overview", tmp_path)

    # Topics: the new topic, then its partitions and configs.
    page.click("text=Topics")
    page.locator("#topics").get_by_role("link", name=topic).click()
    wait_text(page, "#topic-name", topic)
    rows = page.locator("#partitions tbody tr")
    assert rows.count() == 3
    cells = rows.nth(0).locator("td").all_inner_texts()
    assert cells[0] == "0" and sorted(cells[2].split(", ")) == ["1", "2", "3"], cells
    assert sorted(cells[3].split(", ")) == ["1", "2", "3"], cells  # the ISR is full
    assert cells[5] == "6", cells  # log end of partition 0
    assert "cleanup.policy" in text(page, "#configs")
    screenshot(page, "topic", tmp_path)

    # Groups: lag per partition (6 records, 2 committed).
    page.click("text=Consumer groups")
    page.locator("#groups").get_by_role("link", name=group).click()
    wait_text(page, "#group-name", group)
    wait_text(page, "#total-lag", "4")
    lag = page.locator("#lag tbody tr").nth(0).locator("td").all_inner_texts()
    assert lag[:5] == [topic, "0", "2", "6", "4"], lag

    # Messages: by offset, as text, JSON and hex; by timestamp.
    page.goto(f"{console}#/topics/{topic}/messages")
    page.select_option("#mode", "offset")
    page.fill("#from", "2")
    page.click("#read")
    page.wait_for_selector('#message-page[data-start="2"]', timeout=15_000)
    first = page.locator("#messages tbody tr").nth(0).locator("td").all_inner_texts()
    assert first[0] == "2" and first[2] == "customer-2", first
    assert json.loads(first[3]) == {"order": 2, "total": 20}
    assert "source" in first[4] and "web" in first[4]
    assert page.locator("#messages tbody tr").count() == 4
    page.select_option("#format", "json")
    page.click("#read")
    page.wait_for_selector('#message-page[data-format="json"]', timeout=15_000)
    assert '"total": 20' in text(page, "#messages")
    page.select_option("#format", "hex")
    page.click("#read")
    page.wait_for_selector('#message-page[data-format="hex"]', timeout=15_000)
    assert "63 75 73 74" in text(page, "#messages")  # "cust"
    page.select_option("#format", "text")
    page.select_option("#mode", "timestamp")
    page.fill("#from", str(base + 4000))
    page.click("#read")
    page.wait_for_selector('#message-page[data-start="4"]', timeout=15_000)
    assert page.locator("#messages tbody tr").nth(0).locator("td").first.inner_text() == "4"

    # Produce a test message from the page; it is in the log with its key and header.
    page.fill("#produce-key", "from-console")
    page.fill("#produce-value", '{"hello": "console"}')
    page.fill("#produce-headers", "origin=console, kind=test")
    page.fill("#produce-partition", "1")
    page.click("#produce")
    wait_text(page, "#produced", "written to partition 1 at offset 0")
    page.wait_for_selector('#message-page[data-start="0"]', timeout=15_000)
    assert "from-console" in text(page, "#messages")
    screenshot(page, "messages", tmp_path)
    reader = KafkaConsumer(bootstrap_servers=cluster.bootstrap, consumer_timeout_ms=10_000)
    reader.assign([TopicPartition(topic, 1)])
    reader.seek(TopicPartition(topic, 1), 0)
    record = next(iter(reader))
    reader.close()
    assert (record.key, record.value) == (b"from-console", b'{"hello": "console"}')
    assert record.headers == [("origin", b"console"), ("kind", b"test")]


def test_consumer_protocol_group_members_and_assignments(cluster: Cluster, console: str,
                                                          page: Any) -> None:
    """A KIP-848 group (which DescribeGroups does not describe, as in Kafka) shows its
    members and what each is assigned, from ConsumerGroupDescribe."""
    from confluent_kafka import Consumer
    from kafka.admin import NewTopic

    topic, group = unique_name("clicks"), unique_name("kip848")
    a = admin(cluster)
    a.create_topics([NewTopic(topic, 4, 3)])  # RF=3: a later test kills a node
    a.close()
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                  "group.protocol": "consumer", "client.id": "console-kip848"})
    try:
        c.subscribe([topic])
        wait_for(lambda: c.poll(0.2) is None and len(c.assignment()) == 4, 30,
                 "the member to be assigned all 4 partitions")
        page.goto(f"{console}#/groups/{group}")
        wait_text(page, "#group-name", group)
        wait_text(page, "#members", "console-kip848")
        row = page.locator("#members tbody tr").nth(0).locator("td").all_inner_texts()
        assert row[1] == "console-kip848" and row[2] == "127.0.0.1", row
        assert topic in row[3] and "0" in row[3] and "3" in row[3], row
        described = json.loads(__import__("urllib.request").request.urlopen(
            f"{console}api/groups/{group}", timeout=10).read())
        [member] = described["members"]
        assert member["assignment"] == {topic: [0, 1, 2, 3]}, described
        assert described["state"] == "Stable", described
    finally:
        c.close()


def test_refuses_bad_requests(console: str) -> None:
    import urllib.error
    import urllib.request

    def status(path: str, data: bytes | None = None, ctype: str = "application/json") -> int:
        req = urllib.request.Request(console.rstrip("/") + path, data=data,
                                     headers={"Content-Type": ctype})
        try:
            return int(urllib.request.urlopen(req, timeout=15).status)
        except urllib.error.HTTPError as e:
            if path.startswith("/api/"):  # the API always says why, as JSON
                assert json.loads(e.read())["error"]
            return int(e.code)

    assert status("/api/topics/x/messages?limit=100000") == 400
    assert status("/api/topics/x/messages?offset=abc") == 400
    assert status("/api/topics/x/messages", b"value=1", "application/x-www-form-urlencoded") == 400
    assert status("/api/topics/x/messages", b"[1]") == 400
    assert status("/api/topics/" + unique_name("missing")) == 503
    assert status("/static/..%2f..%2fapp.py") == 404
    assert status("/api/groups/" + unique_name("nogroup")) in (200, 503)


def test_follows_a_failover_live(cluster: Cluster, console: str, page: Any,
                                 tmp_path: Path) -> None:
    page.goto(console)
    wait_text(page, "#health-status", "healthy")
    # A marker in the page's memory: still there later means the page never reloaded.
    page.evaluate("window.__odradek_marker = 1")
    healthy = screenshot(page, "healthy", tmp_path)
    victim = cluster.node(3)
    victim.kill()
    wait_for(lambda: text(page, '[data-broker-state="3"]') in ("fenced", "unreachable"), 30,
             "the page to show broker 3 down")
    wait_text(page, "#health-status", "degraded")
    assert "node 3" in text(page, "#problems") or "broker 3" in text(page, "#problems")
    down = screenshot(page, "failover", tmp_path)
    assert (abs(down - healthy)).mean() > 0.001, "the page looks the same with a broker down"
    victim.start()
    wait_text(page, "#health-status", "healthy", timeout_s=60)
    assert text(page, '[data-broker-state="3"]') == "alive"
    assert page.evaluate("window.__odradek_marker") == 1


def test_console_on_the_make_run_cluster(tmp_path: Path) -> None:
    """`make run` then `odradek console`: the console finds the cluster in cluster.json,
    with each node's metrics joined to its broker."""
    import urllib.request

    from tests.integration.test_cluster_up import _free_base, _kill_all, _stop, _up

    data_dir = tmp_path / "data"
    proc, _ = _up(data_dir, _free_base(3))
    port = free_port()
    console = subprocess.Popen([sys.executable, "-m", "odradek.broker.cli.main", "console",
                                "--cluster-file", str(data_dir / "cluster.json"),
                                "--listen", f"127.0.0.1:{port}"])
    try:
        wait_port("127.0.0.1", port)

        def healthy() -> dict[str, Any] | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/overview",
                                        timeout=10) as r:
                o: dict[str, Any] = json.load(r)
            return o if o["status"] == "healthy" else None

        overview = wait_for(healthy, 30, "the console to report the cluster healthy")
        assert [(b["id"], b["metrics"]["up"], b["metrics"]["raft_role"] is not None)
                for b in overview["brokers"]] == [(1, True, True), (2, True, True),
                                                  (3, True, True)]
        assert overview["quorum"]["leader_id"] == overview["controller_id"]
    except BaseException:
        console.kill()
        _kill_all(proc, data_dir)
        raise
    console.terminate()
    console.wait(timeout=20)
    _stop(proc, json.loads((data_dir / "cluster.json").read_text()))
