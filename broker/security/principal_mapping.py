"""``ssl.principal.mapping.rules``: how a client certificate's subject becomes the principal's
name under mutual TLS, with Kafka's rule language (KIP-371, SslPrincipalMapper).

The rules are a comma-separated list, tried in order on the subject's RFC 2253 text
(``CN=alice,OU=eng,O=Example``); the first that applies gives the name:

- ``DEFAULT``: the subject itself (Kafka's default, and the only rule by default);
- ``RULE:pattern/replacement/`` with ``L`` or ``U`` after the last slash to lower- or
  upper-case the result: applies when ``pattern`` (a regular expression) matches the whole
  subject, and the name is the subject with the pattern replaced by ``replacement``, in
  which ``$1``... name the pattern's groups. ``\\`` escapes a slash or a comma in either.

A subject no rule applies to cannot be named: the connection is refused, as Kafka fails
its authentication. Patterns are Python regular expressions, which agree with Java's on
what such rules use (classes, groups, lazy quantifiers, anchors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_RULES = "DEFAULT"

# Kafka's grammar (SslPrincipalMapper.RULE_PATTERN / RULE_SPLITTER), the same expressions.
_RULE = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_SPLITTER = re.compile(r"\s*(" + _RULE + r")\s*(,\s*|$)")
_PARSER = re.compile(_RULE)


class NoMatchingRule(Exception):
    """No rule names this subject."""


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str = ""
    case: str = ""  # "L", "U" or ""

    def apply(self, subject: str) -> str | None:
        if self.pattern is None:
            return subject
        if self.pattern.fullmatch(subject) is None:
            return None
        # Java's String.replaceAll: every match in the subject is replaced.
        name = self.pattern.sub(lambda m: _expand(self.replacement, m), subject)
        return name.lower() if self.case == "L" else name.upper() if self.case == "U" else name


def _expand(replacement: str, m: re.Match[str]) -> str:
    """Java's Matcher.appendReplacement: ``\\x`` is x, ``$n`` the group n (digits taken
    while they still name a group). A ``$n`` beyond the pattern's groups is literal text,
    as Kafka's Rule.escape makes it."""
    out: list[str] = []
    i, groups = 0, m.re.groups
    while i < len(replacement):
        c = replacement[i]
        if c == "\\" and i + 1 < len(replacement):
            out.append(replacement[i + 1])
            i += 2
        elif c == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
            j, n = i + 2, int(replacement[i + 1])
            while j < len(replacement) and replacement[j].isdigit() \
                    and n * 10 + int(replacement[j]) <= groups:
                n, j = n * 10 + int(replacement[j]), j + 1
            if n > groups or (n == 0 and groups == 0):
                out.append(replacement[i:j])
            else:
                out.append(m.group(n) or "")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_rules(text: str) -> tuple[Rule, ...]:
    """The rules of ``ssl.principal.mapping.rules``; ValueError with Kafka's message (and
    the regular expression's own error) for a rule that is not one."""
    rules: list[Rule] = []
    for m in _SPLITTER.finditer(text.strip()):
        one = m.group(1)
        parsed = _PARSER.match(one)
        if parsed is None:
            raise ValueError(f"Invalid rule: {one}")
        if parsed.end() != len(one):
            raise ValueError(f"Invalid rule: `{one}`, unmatched substring: "
                             f"`{one[parsed.end():]}`")
        if parsed.group(1) is not None:
            rules.append(Rule(None))
        elif parsed.group(2) is not None:
            try:
                pattern = re.compile(parsed.group(2))
            except re.error as e:
                raise ValueError(f"Invalid rule: `{one}`: {e}") from None
            rules.append(Rule(pattern, parsed.group(4), parsed.group(6) or ""))
        # else an empty rule: ignored, as in Kafka
    return tuple(rules)


@dataclass(frozen=True, slots=True)
class PrincipalMapper:
    rules: tuple[Rule, ...]

    @classmethod
    def of(cls, text: str) -> PrincipalMapper:
        return cls(parse_rules(text))

    def name(self, subject: str) -> str:
        for rule in self.rules:
            name = rule.apply(subject)
            if name is not None:
                return name
        raise NoMatchingRule(f"no ssl.principal.mapping.rules rule applies to {subject!r}")


IDENTITY = PrincipalMapper((Rule(None),))
