"""Kafka's own command-line tools (the classes behind kafka-topics.sh & co.), run with Java
from the jars tests/compat/fetch_kafka.sh caches from Maven Central.

Run by hand without Java or Maven, the tests that use them skip and say what is missing; in
CI (.ci/run fetches the jars first) a missing piece fails them (tests/requirements.py).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.requirements import require, require_tool

FETCH = Path(__file__).resolve().parent / "fetch_kafka.sh"

# kafka-<name>.sh -> the class the script runs, in Kafka 4.1.
TOPICS = "org.apache.kafka.tools.TopicCommand"
CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
LEADER_ELECTION = "org.apache.kafka.tools.LeaderElectionCommand"
LOG_DIRS = "org.apache.kafka.tools.LogDirsCommand"
METADATA_QUORUM = "org.apache.kafka.tools.MetadataQuorumCommand"
CONFIGS = "kafka.admin.ConfigCommand"  # still Scala, in kafka_2.13, in 4.1
FEATURES = "org.apache.kafka.tools.FeatureCommand"
CLUSTER = "org.apache.kafka.tools.ClusterTool"
CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"

# A short-lived JVM: the C1 compiler only and a shared class archive start it in ~1 s.
_JVM_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-Xmx256m",
              "-Duser.timezone=UTC"]


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr together: the tools print some of what users read (warnings,
        "no active members") on stderr."""
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout ---\n"
                f"{self.stdout}--- stderr ---\n{self.stderr}")


class KafkaTools:
    """Runs a tool class against ``bootstrap`` with the cached classpath."""

    def __init__(self, java: str, lib: Path, bootstrap: str) -> None:
        self.java = java
        self.classpath = str(lib / "*")
        self.bootstrap = bootstrap

    def run(self, cls: str, *args: str, stdin: str | None = None, timeout: float = 60,
            bootstrap: bool = True) -> Result:
        argv = [self.java, *_JVM_FLAGS, "-cp", self.classpath, cls]
        if bootstrap:
            argv += ["--bootstrap-server", self.bootstrap]
        argv += list(args)
        env = {**os.environ, "TZ": "UTC"}
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                           timeout=timeout, env=env)
        return Result(argv, p.returncode, p.stdout, p.stderr)

    def ok(self, cls: str, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run the tool, assert it exited 0, and return its stdout."""
        r = self.run(cls, *args, stdin=stdin, timeout=timeout)
        assert r.returncode == 0, str(r)
        return r.stdout


def kafka_tools_lib() -> Path:
    """The directory of cached jars, fetched first when Maven is there and it is not yet."""
    require_tool("java", "apt-get install openjdk-17-jre-headless")
    version = os.environ.get("KAFKA_TOOLS_VERSION", "4.1.1")
    cache = Path(os.environ.get("KAFKA_TOOLS_CACHE")
                 or FETCH.parents[2] / ".ci" / "cache" / f"kafka-{version}")
    if not (cache / ".complete").exists():
        require_tool("mvn", "apt-get install maven; or run tests/compat/fetch_kafka.sh")
        p = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, timeout=900)
        require(p.returncode == 0,
                f"tests/compat/fetch_kafka.sh could not fetch Kafka's tools: {p.stderr[-2000:]}")
    lib = cache / "lib"
    require(any(lib.glob("kafka-tools-*.jar")),
            f"no kafka-tools jar in {lib} (run tests/compat/fetch_kafka.sh)")
    return lib


def kafka_tools(bootstrap: str, lib: Path | None = None) -> KafkaTools:
    java = require_tool("java", "apt-get install openjdk-17-jre-headless")
    return KafkaTools(java, lib or kafka_tools_lib(), bootstrap)
