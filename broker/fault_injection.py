"""Broker faults a test switches on in a node process, to show that the checks meant to
catch them do (negative controls: a checker that never fails proves nothing).

Each one breaks a guarantee on purpose; nothing but a test harness should set them. They
are read once, from the environment of the node process, so no configuration file can
carry one into a real deployment by mistake:

    ODRADEK_FAULT_INJECTION=<name>[,<name>...]

``read-committed-past-lso``
    READ_COMMITTED fetches and ListOffsets read up to the high watermark and report it as
    the last stable offset, as a broker that lost track of open transactions would:
    consumers see records of transactions still open, and of ones that abort later.
    ``odradek verify --workload txn --txn-past-lso`` runs with it and must report
    uncommitted and aborted reads.
"""

from __future__ import annotations

import logging
import os

ENV = "ODRADEK_FAULT_INJECTION"
READ_COMMITTED_PAST_LSO = "read-committed-past-lso"
KNOWN = frozenset({READ_COMMITTED_PAST_LSO})

log = logging.getLogger("odradek.fault_injection")


def _parse(value: str) -> frozenset[str]:
    names = frozenset(n.strip() for n in value.split(",") if n.strip())
    unknown = sorted(names - KNOWN)
    if unknown:
        # Refused rather than ignored: a negative control that silently injects nothing
        # would pass for a checker that works.
        raise RuntimeError(f"{ENV}: unknown fault {', '.join(unknown)}; known: "
                           f"{', '.join(sorted(KNOWN))} (unset it to run normally)")
    return names


ACTIVE: frozenset[str] = _parse(os.environ.get(ENV, ""))

# The one the fetch path tests per request, as a plain module constant.
read_committed_past_lso = READ_COMMITTED_PAST_LSO in ACTIVE


def warn_if_active(node_id: int) -> None:
    """Say at start-up, loudly, that this node breaks a guarantee on purpose."""
    for name in sorted(ACTIVE):
        log.warning("node %d: fault injection %s is ON (%s): this node breaks a guarantee "
                    "on purpose, for a test's negative control", node_id, name, ENV)
