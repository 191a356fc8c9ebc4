"""Subscription regexes (broker/group/topic_regex.py): RE2's dialect and linear-time
matching, results kept while the topic names are the same object."""

from __future__ import annotations

import pytest

from odradek.broker.group.topic_regex import RegexError, TopicRegexes


def test_a_catastrophic_pattern_for_backtracking_matches_at_once() -> None:
    # With Python's re this takes time doubling per character (0.7 s at 24 here):
    # at 240 it would never end, on the broker's event loop.
    names = {"a" * 240 + "b": None, "aaa": None}
    assert TopicRegexes().matching("(a+)+$", names) == {"aaa"}


def test_whole_names_only_in_re2s_dialect() -> None:
    r = TopicRegexes()
    names = ["orders", "orders-eu", "my-orders", "payments"]
    assert r.matching("orders.*", names) == {"orders", "orders-eu"}
    assert r.matching(r"\w+-orders|pay\p{L}+", names) == {"my-orders", "payments"}
    for bad in ("(?<=x)orders", r"(a)\1", "orders("):  # look-behind, back-reference
        with pytest.raises(RegexError):
            r.compile(bad)


def test_results_are_kept_while_the_names_are_the_same_object() -> None:
    r = TopicRegexes()
    names = {"t1": None}
    assert r.matching("t.*", names) == {"t1"}
    names["t2"] = None  # mutated in place: not how the metadata image changes
    assert r.matching("t.*", names) == {"t1"}
    replaced = dict(names)  # a new image's mapping
    assert r.matching("t.*", replaced) == {"t1", "t2"}
