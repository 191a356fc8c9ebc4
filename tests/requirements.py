"""Skip by hand, fail in CI: the one rule for tests that need what a machine may lack.

The suite must not skip silently. A test that needs a system tool, root, network namespaces
or a container runtime calls one of these: run by hand on a machine without it, the test
skips and says what is missing and how to get it; in CI (``CI=true``), where .ci/run installs
everything first, a missing requirement fails the test instead.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Go on if ``condition`` holds; otherwise skip with ``reason``, or fail in CI."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI must be able to run this test: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, install: str) -> str:
    """The path of command ``name``; ``install`` says how to get it (e.g. "apt-get install
    kcat")."""
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed ({install})")
    assert path is not None
    return path


def netns_unavailable_reason() -> str | None:
    """None when network namespaces with nftables can be built here, else why not."""
    from odradek.broker.verify.netns import NetnsUnavailable, check_environment

    try:
        check_environment()
    except NetnsUnavailable as e:
        return str(e)
    return None


def require_netns() -> None:
    """Network namespaces (root, ip, nft), for the network fault tests."""
    reason = netns_unavailable_reason()
    require(reason is None, reason or "")
