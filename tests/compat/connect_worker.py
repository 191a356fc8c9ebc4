"""One Kafka Connect worker in distributed mode (Kafka 4.1's ConnectDistributed, run with Java
from the jars ``tests/compat/fetch_kafka.sh connect`` caches), and its REST API.

The worker is an ordinary JVM process with its own worker.properties and log file; kill() is
a real SIGKILL, as in a crash. Workers this process started are killed when it exits, so an
interrupted test run leaves no JVM behind.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any

from tests.integration.harness import free_port
from tests.requirements import require, require_tool

FETCH = Path(__file__).resolve().parent / "fetch_kafka.sh"

# Long enough for a worker, short enough to start quickly on two cores: the C1 compiler only,
# a shared class archive, and heap for the worker's clients, REST server and tasks.
_JVM_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-Xmx384m",
              "-Duser.timezone=UTC",
              # slf4j-simple (fetched with the connect set) logs to stderr, i.e. the log file.
              "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
              "-Dorg.slf4j.simpleLogger.showDateTime=true",
              "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS"]

DISTRIBUTED = "org.apache.kafka.connect.cli.ConnectDistributed"
FILE_SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"
FILE_SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"


def connect_lib() -> Path:
    """The directory of Connect's jars, fetched first when Maven is there and they are not
    yet (fetch_kafka.sh returns at once when its cache is complete)."""
    require_tool("java", "apt-get install openjdk-17-jre-headless")
    p = subprocess.run(["bash", str(FETCH), "connect"], capture_output=True, text=True,
                       timeout=900)
    if p.returncode != 0 and shutil.which("mvn") is None:
        require_tool("mvn", "apt-get install maven; or run tests/compat/fetch_kafka.sh connect")
    require(p.returncode == 0, "tests/compat/fetch_kafka.sh connect could not fetch Kafka "
            f"Connect's jars: {p.stderr[-2000:]}")
    lib = Path(p.stdout.strip().splitlines()[-1])
    require(any(lib.glob("connect-runtime-*.jar")) and any(lib.glob("connect-file-*.jar")),
            f"no connect-runtime or connect-file jar in {lib} "
            "(run tests/compat/fetch_kafka.sh connect)")
    return lib


class RestError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body}")
        self.status = status


_live: weakref.WeakSet[ConnectWorker] = weakref.WeakSet()


@atexit.register
def _kill_started_workers() -> None:
    for w in list(_live):
        w.kill()


class ConnectWorker:
    """A distributed-mode worker: ``properties`` on top of ``bootstrap`` and a REST listener
    on a free port; the log is ``base/connect.log`` (appended to across restarts)."""

    def __init__(self, java: str, lib: Path, base: Path, bootstrap: str,
                 properties: dict[str, str | int]) -> None:
        self.java = java
        self.classpath = str(lib / "*")
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = base / "worker.properties"
        self.log_path = base / "connect.log"
        props: dict[str, str | int] = {
            "bootstrap.servers": bootstrap,
            "listeners": self.url,
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": self.port,
            **properties,
        }
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ConnectWorker:
        """Start the JVM and wait until the worker says it has started (GET /health answers
        200 once the herder has joined its group and read the config topic)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.java, *_JVM_FLAGS, "-cp", self.classpath, DISTRIBUTED,
                 str(self.config_path)],
                stdout=log, stderr=log, start_new_session=True,
                env={**os.environ, "TZ": "UTC"})
        _live.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Connect worker exited with {self.proc.returncode}:\n"
                                   f"{self.logs()}")
            try:
                if self.request("GET", "/health", timeout=2).get("status") == "healthy":
                    return self
            except (OSError, RestError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the Connect worker is not healthy after {timeout}s:\n"
                           f"{self.logs()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as in a crash: no offsets flushed, no group left. (A SIGTERM'd worker may
        also hang in Jetty's shutdown, so cleanup kills too.)"""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        _live.discard(self)

    def restart(self, timeout: float = 60.0) -> ConnectWorker:
        self.kill()
        return self.start(timeout)

    def logs(self, tail: int = 12000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def request(self, method: str, path: str, body: Any = None, timeout: float = 15) -> Any:
        """A REST call; the decoded JSON answer, or RestError with Connect's message."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise RestError(method, path, e.code, e.read().decode(errors="replace")) from None
        return json.loads(raw) if raw else None

    def put_connector(self, name: str, config: dict[str, str], timeout: float = 30) -> Any:
        """Create (or update) a connector. A 409 (a rebalance in progress: the worker has
        not yet settled as its group's leader) is retried until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.request("PUT", f"/connectors/{name}/config", config)
            except RestError as e:
                if e.status != 409 or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)
