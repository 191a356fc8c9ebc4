"""Small Java programs of the compat tests (tests/compat/streams/*.java), compiled against
cached Kafka jars and run as their own JVMs.

Compiled classes are cached next to the jars under the source's hash: a warm run does not
recompile, an edited source is compiled again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.requirements import require_tool

SOURCES = Path(__file__).resolve().parent / "streams"
# Short-lived JVMs: the C1 compiler only starts them faster on two cores.
JVM_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-Xmx256m"]


@dataclass(frozen=True)
class JavaApp:
    java: str
    classpath: str
    main: str

    def argv(self, *args: str) -> list[str]:
        return [self.java, *JVM_FLAGS, "-cp", self.classpath, self.main, *args]


def compile_app(source: Path, lib: Path) -> JavaApp:
    """``source`` (one class named as the file) compiled against the jars in ``lib``; a
    machine without a JDK skips (fails in CI) and says how to get one."""
    java = require_tool("java", "apt-get install openjdk-17-jre-headless")
    javac = require_tool("javac", "apt-get install openjdk-17-jdk-headless")
    main = source.stem
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    classes = lib.parent / f"{main.lower()}-{digest}"
    if not (classes / f"{main}.class").exists():
        building = classes.with_name(f"{classes.name}.tmp{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        p = subprocess.run([javac, "-d", str(building), "-cp", str(lib / "*"), str(source)],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"javac {source.name} failed:\n{p.stdout}{p.stderr}"
        # Renamed into place whole: a concurrent or interrupted run never sees half of it.
        try:
            building.rename(classes)
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
    return JavaApp(java, f"{lib / '*'}{os.pathsep}{classes}", main)
