"""Settings for the whole suite."""

import signal

import pytest

# A suite started in the background by a non-interactive shell (`make test &`, CI wrappers)
# inherits SIGINT ignored, and so would every process the tests start: the tests that stop a
# CLI or a pytest run with SIGINT would wait forever. Catching it here gives the children the
# default disposition again (a caught signal is reset on exec, an ignored one is not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# A test that fails runs once more (make test: --reruns 1, docs/testing.md). pytest-
# rerunfailures names it in the summary but shows nothing of why it failed, and a test that
# needed a rerun is a bug to look into: its first failure is printed at the end of the run.
_first_failures: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcome: str = report.outcome  # "rerun" is pytest-rerunfailures', not in pytest's type
    if outcome == "rerun":
        # With what it printed (a test may print the nodes' logs when it fails), the last
        # 20,000 characters of each part.
        text = report.longreprtext + "".join(
            f"\n----- {title} -----\n{content[-20_000:]}" for title, content in report.sections)
        _first_failures.append((report.nodeid, text))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for nodeid, text in _first_failures:
        terminalreporter.write_sep("=", f"first failure of {nodeid} (passed on its rerun "
                                        "or failed again, see above)")
        terminalreporter.write_line(text)
