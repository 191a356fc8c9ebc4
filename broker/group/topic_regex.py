"""Subscription regexes of consumer groups (KIP-848): compiled and matched with RE2.

Kafka matches them with RE2/J, so the dialect is RE2's, and so is the guarantee that makes
this safe to run on a broker's event loop: RE2 matches in time linear in the input, with
bounded memory. Python's ``re`` backtracks: a client subscribing with ``(a+)+$`` while a
topic named ``aaaa...ab`` exists would hold the loop for minutes (a node killable by one
heartbeat; see docs/adr/0011-re2-for-subscription-regexes.md).

Matching every topic name at every heartbeat would cost O(topics) per heartbeat; results
are kept per regex for as long as the names they were matched against are the same object
(the metadata image's topic mapping, replaced on every change).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import re2

# RE2 refuses to compile a pattern whose program needs more (Kafka's RE2/J has no such
# bound, but no topic regex needs more than a fraction of it).
MAX_PROGRAM_BYTES = 1 << 20
_CACHE_SIZE = 256


class RegexError(ValueError):
    """The regex is not valid RE2 syntax, or too big; the message says why."""


def _options() -> Any:
    o = re2.Options()
    o.log_errors = False  # refused patterns are the client's error, answered to it
    o.max_mem = MAX_PROGRAM_BYTES
    return o


_OPTIONS = _options()


class TopicRegexes:
    """Compiled regexes and what they matched, for one coordinator."""

    def __init__(self) -> None:
        self._compiled: OrderedDict[str, Any] = OrderedDict()
        self._names: object | None = None  # the names the matches below were taken from
        self._matches: dict[str, frozenset[str]] = {}

    def compile(self, regex: str) -> Any:
        """The compiled pattern; raises RegexError for one RE2 refuses."""
        pattern = self._compiled.get(regex)
        if pattern is not None:
            self._compiled.move_to_end(regex)
            return pattern
        try:
            pattern = re2.compile(regex, _OPTIONS)
        except re2.error as e:
            detail = e.args[0] if e.args else e
            if isinstance(detail, bytes):
                detail = detail.decode(errors="replace")
            raise RegexError(str(detail)) from e
        self._compiled[regex] = pattern
        if len(self._compiled) > _CACHE_SIZE:
            self._compiled.popitem(last=False)
        return pattern

    def matching(self, regex: str, names: Iterable[str]) -> frozenset[str]:
        """The names ``regex`` matches as a whole (Kafka's matcher), from ``names``; the
        same ``names`` object as the last call reuses earlier results."""
        if names is not self._names:
            self._names = names
            self._matches = {}
        found = self._matches.get(regex)
        if found is None:
            pattern = self.compile(regex)
            found = frozenset(n for n in names if pattern.fullmatch(n) is not None)
            self._matches[regex] = found
        return found
