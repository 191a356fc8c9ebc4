"""Coverage-guided fuzzer (atheris/libFuzzer) of request framing, decoding and dispatch.

    python -m tests.fuzz.decode_fuzzer --runs 1000000 [--corpus DIR] [--max-seconds S]
                                       [--jobs J] [--artifacts DIR]
    python -m tests.fuzz.decode_fuzzer --replay FILE_OR_DIR ...

What one input goes through, and the oracles that make an input a crash, are in
tests/fuzz/target.py; docs/fuzzing.md has the whole story and the measured figures.

This process only orchestrates: it starts ``--jobs`` worker processes (this module with
``--worker``), each a libFuzzer run of ``--runs / jobs`` inputs on its own in-process node,
sharing one corpus directory (libFuzzer reloads it, so each worker picks up what the others
found). libFuzzer's own ``-jobs`` is not used: it re-executes ``argv[0]``, which under
``python -m`` is a .py file, not a program. The corpus is the writable ``--corpus`` (a temp
dir by default) plus tests/fuzz/corpus/seeds and tests/fuzz/corpus/regressions, read only.
A crashing input is written to ``--artifacts`` and the run exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

FUZZ_DIR = Path(__file__).resolve().parent
REPO = FUZZ_DIR.parents[1]
SEEDS = FUZZ_DIR / "corpus" / "seeds"
REGRESSIONS = FUZZ_DIR / "corpus" / "regressions"
DICTIONARY = FUZZ_DIR / "kafka.dict"

MAX_LEN = 64 * 1024
RSS_LIMIT_MB = 2048
# A single input that takes this long is a hang (the handler budget is 50 ms).
INPUT_TIMEOUT_S = 30
STATS_EVERY_S = 30.0
# The project's own package: coverage feedback comes from it, not from kio or asyncio.
INSTRUMENTED = ("odradek",)

# libFuzzer lines worth showing while the run goes (all of them go to the worker's log).
_SHOWN = re.compile(r"pulse|INITED|DONE|Done |stat::|ERROR|Error|Traceback|crash|"
                    r"fuzz-stats|Finding|artifact|==\d+==|timeout|out-of-memory|malloc")


def input_files(paths: Iterable[Path]) -> list[Path]:
    """Every regular file under ``paths`` (files given directly are kept), README aside."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file()
                              and not f.name.startswith(".") and f.suffix != ".md"))
        elif p.is_file():
            out.append(p)
    return out


def replay(paths: Iterable[Path], dispatch: bool = True) -> int:
    """Run every input under ``paths`` through the harness, uninstrumented; raise on the
    first finding. Returns how many inputs were run."""
    from tests.fuzz.target import FuzzTarget

    target = FuzzTarget(dispatch=dispatch)
    try:
        files = input_files(paths)
        for f in files:
            try:
                target(f.read_bytes())
            except Exception as e:
                raise AssertionError(f"{f}: {e!r}") from e
        return len(files)
    finally:
        target.close()


# --- worker: one libFuzzer run in this process --------------------------------------------


def _worker(libfuzzer_args: list[str], dispatch: bool, instrument: str,
            scratch: Path | None) -> None:
    import atheris

    if instrument == "all":
        from tests.fuzz.target import FuzzTarget

        atheris.instrument_all()
    else:
        with atheris.instrument_imports(include=list(INSTRUMENTED)):
            from tests.fuzz.target import FuzzTarget  # noqa: F811 - instrumented import

    from tests.fuzz.node_host import NodeHost
    from tests.fuzz.target import Finding

    # libFuzzer ends the process with exit(): no Python clean-up runs, so the node's data
    # dirs go under ``scratch``, which the orchestrator removes.
    target = FuzzTarget(NodeHost(scratch=scratch), dispatch=dispatch)
    started = time.monotonic()
    last = [started, 0.0]  # time and input count of the last stats line

    def one_input(data: bytes) -> None:
        try:
            target(data)
        except Finding as e:
            if e.origin is not None:
                # libFuzzer saves the input running now; save the one that caused it too.
                _save_origin(libfuzzer_args, e.origin)
            raise
        now = time.monotonic()
        if now - last[0] >= STATS_EVERY_S:
            rate = (target.stats["inputs"] - last[1]) / (now - last[0])
            last[0], last[1] = now, target.stats["inputs"]
            _print_stats(target, now - started, rate)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def _save_origin(libfuzzer_args: list[str], data: bytes) -> None:
    prefix = next((a.split("=", 1)[1] for a in libfuzzer_args
                   if a.startswith("-artifact_prefix=")), "./")
    path = f"{prefix}crash-origin-{hashlib.sha1(data).hexdigest()}"
    Path(path).write_bytes(data)
    print(f"the input that sent the failing request: {path}", file=sys.stderr, flush=True)


def _print_stats(target: Any, elapsed: float, rate: float) -> None:
    stats = dict(target.stats)
    stats["recycled-nodes"] = target.host.recycled
    stats["seconds"] = round(elapsed, 1)
    stats["inputs-per-s"] = round(rate)
    print("fuzz-stats " + json.dumps(stats, sort_keys=True), file=sys.stderr, flush=True)


# --- orchestrator ---------------------------------------------------------------------------


def _libfuzzer_args(corpus: Path, artifacts: Path, runs: int, max_seconds: int | None,
                    seed: int) -> list[str]:
    args = [str(corpus), str(SEEDS), str(REGRESSIONS),
            f"-runs={runs}", f"-max_len={MAX_LEN}", f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-timeout={INPUT_TIMEOUT_S}", f"-artifact_prefix={artifacts}/",
            f"-seed={seed}", f"-dict={DICTIONARY}", "-print_final_stats=1"]
    if max_seconds:
        args.append(f"-max_total_time={max_seconds}")
    return args


class _Worker:
    def __init__(self, index: int, argv: list[str], log_path: Path, quiet: bool) -> None:
        self.index = index
        self.log_path = log_path
        self.final: dict[str, float] = {}
        self.lines: list[str] = []
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                          env.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
        self._quiet = quiet
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                self.lines.append(line)
                del self.lines[:-400]
                m = re.match(r"stat::(\w+):\s+(\d+)", line)
                if m:
                    self.final[m.group(1)] = float(m.group(2))
                m = re.search(r"\bcov: (\d+)", line)
                if m:
                    self.final["coverage"] = float(m.group(1))
                if not self._quiet and _SHOWN.search(line):
                    sys.stderr.write(f"[w{self.index}] {line}")
                    sys.stderr.flush()

    def wait(self) -> int:
        rc = self.proc.wait()
        self._thread.join()
        return rc


def run(runs: int, corpus: Path | None, max_seconds: int | None, jobs: int,
        artifacts: Path, dispatch: bool = True, instrument: str = "imports",
        quiet: bool = False, seed: int | None = None, out: IO[str] = sys.stdout) -> int:
    """Run the fuzzer to completion; 0 when no worker found anything."""
    artifacts.mkdir(parents=True, exist_ok=True)
    from tests.fuzz.node_host import scratch_root

    # The workers' node data dirs, on /dev/shm when there is one.
    scratch = Path(tempfile.mkdtemp(prefix="odradek-fuzz-", dir=scratch_root()))
    own_corpus = corpus is None
    corpus_dir = Path(tempfile.mkdtemp(prefix="odradek-fuzz-corpus-")) if own_corpus \
        else corpus
    assert corpus_dir is not None
    corpus_dir.mkdir(parents=True, exist_ok=True)
    per_worker = math.ceil(runs / jobs)
    base_seed = seed if seed is not None else int(time.time()) & 0xFFFFFF
    started = time.monotonic()
    workers = []
    for i in range(jobs):
        argv = [sys.executable, "-m", "tests.fuzz.decode_fuzzer", "--worker",
                "--scratch", str(scratch), "--instrument", instrument,
                *([] if dispatch else ["--no-dispatch"]), "--",
                *_libfuzzer_args(corpus_dir, artifacts, per_worker, max_seconds,
                                 base_seed + i)]
        workers.append(_Worker(i, argv, artifacts / f"worker-{i}.log", quiet))
    failed: list[_Worker] = []
    interrupted = False
    # SIGTERM (a CI timeout, `kill`) stops the workers too instead of orphaning them.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        pending = list(workers)
        while pending:
            for w in list(pending):
                if w.proc.poll() is not None:
                    w.wait()
                    pending.remove(w)
                    if w.proc.returncode != 0:
                        failed.append(w)
            if failed:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        for w in workers:
            if w.proc.poll() is None:
                w.proc.terminate()
                w.wait()
        shutil.rmtree(scratch, ignore_errors=True)
        if own_corpus:
            shutil.rmtree(corpus_dir, ignore_errors=True)
    elapsed = time.monotonic() - started
    _report(workers, failed, elapsed, artifacts, out)
    if interrupted:
        print("interrupted", file=out)
        return 130
    return 1 if failed else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _report(workers: Sequence[_Worker], failed: Sequence[_Worker], elapsed: float,
            artifacts: Path, out: IO[str]) -> None:
    total = sum(int(w.final.get("number_of_executed_units", 0)) for w in workers)
    peak = max((w.final.get("peak_rss_mb", 0) for w in workers), default=0)
    # Code edges reached in the product (libFuzzer's "cov:"): 0 means no coverage feedback,
    # the fuzzer then mutates blindly (INSTRUMENTED names no module that was imported).
    coverage = max((w.final.get("coverage", 0) for w in workers), default=0)
    print(f"decode fuzzer: {total} inputs in {elapsed:.0f} s by {len(workers)} worker(s), "
          f"{total / max(elapsed, 1e-9):.0f} inputs/s, peak RSS {peak:.0f} MB per worker, "
          f"coverage {coverage:.0f} edges", file=out)
    for w in workers:
        stats = [line for line in w.lines if line.startswith("fuzz-stats ")]
        if stats:
            print(f"  worker {w.index}: {stats[-1].strip()}", file=out)
    for w in failed:
        print(f"worker {w.index} exited with {w.proc.returncode}; log: {w.log_path}; crashing "
              f"inputs are in {artifacts}/ (crash-*, timeout-*, oom-*). Last lines:", file=out)
        print("".join(w.lines[-60:]), file=out)
    out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.decode_fuzzer",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000,
                        help="inputs to run in all (split among the jobs)")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="writable corpus directory kept after the run "
                             "(default: a temporary one)")
    parser.add_argument("--max-seconds", type=int, default=None,
                        help="stop after this many seconds even if --runs is not reached")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes (default: 2, or 1 on a single CPU)")
    parser.add_argument("--artifacts", type=Path,
                        default=Path(tempfile.gettempdir()) / "odradek-fuzz-artifacts",
                        help="where crashing inputs and worker logs go")
    parser.add_argument("--no-dispatch", action="store_true",
                        help="framing and decoding only: no request reaches a handler")
    parser.add_argument("--instrument", choices=("imports", "all"), default="imports",
                        help="coverage of broker/controller/storage only (default), or of "
                             "every Python module (much slower)")
    parser.add_argument("--seed", type=int, default=None, help="libFuzzer -seed of worker 0")
    parser.add_argument("--quiet", action="store_true", help="only the final report")
    parser.add_argument("--replay", type=Path, nargs="+", metavar="PATH",
                        help="run these inputs (files or directories) once, uninstrumented")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("libfuzzer_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.libfuzzer_args, not args.no_dispatch, args.instrument, args.scratch)
        return 0  # not reached: libFuzzer exits the process
    if args.replay:
        n = replay(args.replay, dispatch=not args.no_dispatch)
        print(f"replayed {n} inputs: no finding")
        return 0
    if args.runs < 1 or args.jobs < 1:
        parser.error("--runs and --jobs must be at least 1")
    return run(args.runs, args.corpus, args.max_seconds, args.jobs,
               args.artifacts.resolve(), dispatch=not args.no_dispatch,
               instrument=args.instrument, quiet=args.quiet, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
