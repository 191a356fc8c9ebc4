"""Kafka's ``sasl.jaas.config`` value: parsing it, and reading the two things a broker takes
from it (the PLAIN users it accepts, and its own username and password as a SASL client
of the other brokers).

The value is one or more JAAS login module entries::

    <LoginModuleClass> <required|requisite|sufficient|optional> key="value" key2=value2;

The tokenizer follows Kafka's (JaasConfig, a java.io.StreamTokenizer): whitespace is any
character up to the space, ``"`` and ``'`` quote values with Java's backslash escapes,
``/* */``, ``//`` and even a lone ``/`` start comments (so a value holding ``/`` must be
quoted), the control flag is case-insensitive and a repeated option keeps its last value.
Where Kafka silently accepts a broken value (a quote or comment left open) this parser
refuses it. Error messages say where the problem is but never repeat option values, which
are passwords.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

PLAIN_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
CONTROL_FLAGS = ("required", "requisite", "sufficient", "optional")
CONFIG_NAME = "sasl.jaas.config"

_EXAMPLE = f'{PLAIN_LOGIN_MODULE} required username="admin" password="admin-secret";'


@dataclass(frozen=True)
class JaasEntry:
    """One login module entry; ``flag`` is lower case."""

    login_module: str
    flag: str
    options: dict[str, str]

    def __repr__(self) -> str:
        # Option values are passwords: a logged entry shows their names only.
        return (f"JaasEntry(login_module={self.login_module!r}, flag={self.flag!r}, "
                f"options={sorted(self.options)!r})")


_Kind = Literal["word", "quoted", ";", "=", "end"]


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    text: str
    at: int  # 1-based position of the token's first character in the value
    after_comment: bool  # a comment was skipped just before it

    @property
    def is_value(self) -> bool:
        return self.kind in ("word", "quoted")

    def describe(self) -> str:
        """What was found, for an error message, without repeating a word's text."""
        return {"word": "a word", "quoted": "a quoted string", ";": "';'", "=": "'='",
                "end": "the end of the value"}[self.kind]


# StreamTokenizer's escapes in quoted strings (besides octal and "any other char is itself").
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class _Lexer:
    def __init__(self, text: str, name: str) -> None:
        self._text = text
        self._name = name
        self._pos = 0

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self._name}: {message}")

    def tokens(self) -> Iterator[_Token]:
        while True:
            after_comment = self._skip_blanks_and_comments()
            start = self._pos
            if start >= len(self._text):
                yield _Token("end", "", start + 1, after_comment)
                return
            c = self._text[start]
            if c in ";=":
                self._pos += 1
                yield _Token(";" if c == ";" else "=", c, start + 1, after_comment)
            elif c in "\"'":
                yield _Token("quoted", self._quoted(c), start + 1, after_comment)
            else:
                yield _Token("word", self._word(), start + 1, after_comment)

    def _skip_blanks_and_comments(self) -> bool:
        text, skipped = self._text, False
        while self._pos < len(text):
            c = text[self._pos]
            if c <= " ":
                self._pos += 1
            elif text.startswith("/*", self._pos):
                end = text.find("*/", self._pos + 2)
                if end < 0:
                    raise self.error(f"the comment opened at character {self._pos + 1} is "
                                     "never closed with '*/'")
                self._pos, skipped = end + 2, True
            elif c == "/":
                # '//' and, as in Kafka, a lone '/' comment out the rest of the line.
                while self._pos < len(text) and text[self._pos] not in "\r\n":
                    self._pos += 1
                skipped = True
            else:
                break
        return skipped

    def _word(self) -> str:
        text, start = self._text, self._pos
        while (self._pos < len(text) and text[self._pos] > " "
               and text[self._pos] not in ";=\"'/"):
            self._pos += 1
        return text[start:self._pos]

    def _quoted(self, quote: str) -> str:
        text, start = self._text, self._pos
        out: list[str] = []
        self._pos += 1
        while self._pos < len(text):
            c = text[self._pos]
            if c == quote:
                self._pos += 1
                return "".join(out)
            if c in "\r\n":
                break
            if c == "\\" and self._pos + 1 < len(text):
                out.append(self._escape())
            else:
                out.append(c)
                self._pos += 1
        raise self.error(f"the quoted value opened at character {start + 1} is not closed "
                         f"with {quote} on the same line")

    def _escape(self) -> str:
        """The escape at the backslash under ``_pos``, as java.io.StreamTokenizer reads
        it: a letter of _ESCAPES, up to three octal digits, or any other character as
        itself."""
        text = self._text
        self._pos += 1
        c = text[self._pos]
        if c in "01234567":
            # Three digits only when the first is 0-3, so the value stays below 256.
            digits = 3 if c <= "3" else 2
            end = self._pos
            while end < len(text) and end - self._pos < digits and text[end] in "01234567":
                end += 1
            value = chr(int(text[self._pos:end], 8))
            self._pos = end
            return value
        self._pos += 1
        return _ESCAPES.get(c, c)


def parse_jaas_config(text: str, name: str = CONFIG_NAME) -> list[JaasEntry]:
    """The entries of a ``sasl.jaas.config`` value, in order. ``name`` is the config's
    name in error messages (a listener-prefixed one, for instance). Raises ValueError."""
    lexer = _Lexer(text, name)
    tokens = lexer.tokens()
    entries: list[JaasEntry] = []
    token = next(tokens)
    while token.kind != "end":
        entries.append(_entry(token, tokens, lexer))
        token = next(tokens)
    if not entries:
        raise lexer.error(f"no login module given; expected for example: {_EXAMPLE}")
    return entries


def _entry(first: _Token, tokens: Iterator[_Token], lexer: _Lexer) -> JaasEntry:
    if not first.is_value:
        raise lexer.error(f"expected a login module class name at character {first.at}, "
                          f"found {first.describe()}; each entry is like: {_EXAMPLE}")
    module = first.text
    flag = next(tokens)
    if not flag.is_value:
        raise lexer.error(f"expected a control flag ({', '.join(CONTROL_FLAGS)}) after "
                          f"{module} at character {flag.at}, found {flag.describe()}")
    if flag.text.lower() not in CONTROL_FLAGS:
        raise lexer.error(f"invalid control flag {flag.text!r} for {module} at character "
                          f"{flag.at}: use one of {', '.join(CONTROL_FLAGS)}")
    options: dict[str, str] = {}
    token = next(tokens)
    while token.kind not in (";", "end"):
        key = token
        bad = next(tokens) if key.is_value else key
        if not key.is_value or bad.kind != "=":
            raise lexer.error(f"expected key=value in the options of {module} at character "
                              f"{bad.at}, found {bad.describe()}; quote values that hold "
                              "spaces, ';', '=' or '/'")
        value = next(tokens)
        if not value.is_value:
            hint = (" (an unquoted '/' starts a comment: quote values that hold '/')"
                    if value.after_comment else "")
            raise lexer.error(f"expected a value for option {key.text!r} of {module} at "
                              f"character {value.at}, found {value.describe()}{hint}")
        options[key.text] = value.text
        token = next(tokens)
    if token.kind != ";":
        raise lexer.error(f"expected ';' after the options of {module} at character "
                          f"{token.at}; every entry ends with ';'")
    return JaasEntry(login_module=module, flag=flag.text.lower(), options=options)


def single_entry(entries: Sequence[JaasEntry], name: str = CONFIG_NAME) -> JaasEntry:
    """The one entry of a value, which Kafka requires of ``sasl.jaas.config`` (JaasContext
    refuses any other count)."""
    if len(entries) != 1:
        raise ValueError(f"{name} contains {len(entries)} login modules, should be 1 module")
    return entries[0]


def plain_users(entries: Sequence[JaasEntry]) -> dict[str, str]:
    """username -> password from the ``user_<name>`` options of the PlainLoginModule
    entries: the users a Kafka broker's SASL/PLAIN accepts. When an option repeats across
    entries the first wins, as Kafka's lookup finds it first."""
    users: dict[str, str] = {}
    for entry in entries:
        if entry.login_module != PLAIN_LOGIN_MODULE:
            continue
        for key, password in entry.options.items():
            if key.startswith("user_") and len(key) > len("user_"):
                users.setdefault(key[len("user_"):], password)
    return users


def client_credentials(entries: Sequence[JaasEntry],
                       name: str = CONFIG_NAME) -> tuple[str, str] | None:
    """(username, password) from the first entry that has them: the identity a broker
    uses when it authenticates to other brokers. None when no entry names a client."""
    for entry in entries:
        username, password = entry.options.get("username"), entry.options.get("password")
        if username is None and password is None:
            continue
        if username is None or password is None:
            missing = "username" if username is None else "password"
            raise ValueError(f"{name}: {entry.login_module} has "
                             f"{'a password' if username is None else 'a username'} but no "
                             f"{missing}; give both username=\"...\" and password=\"...\"")
        return username, password
    return None
