"""Kafka's ``sasl.jaas.config`` parser (broker/security/jaas.py): Kafka's documented
examples, its tokenizer's rules (quotes, escapes, comments), errors that say where, never
a password in an error or a repr, and the broker's PLAIN users and client identity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from odradek.broker.security.jaas import (
    PLAIN_LOGIN_MODULE,
    SCRAM_LOGIN_MODULE,
    JaasEntry,
    client_credentials,
    parse_jaas_config,
    plain_users,
    single_entry,
)

# Kafka's documentation (Authentication using SASL/PLAIN and SASL/SCRAM).
KAFKA_PLAIN_BROKER = (
    'org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
    'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')
KAFKA_SCRAM = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
               'username="admin" password="admin-secret";')
KAFKA_PLAIN_CLIENT = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                      'username="alice" password="alice-secret";')


def test_kafka_plain_broker_example() -> None:
    entries = parse_jaas_config(KAFKA_PLAIN_BROKER)
    assert entries == [JaasEntry(PLAIN_LOGIN_MODULE, "required", {
        "username": "admin", "password": "admin-secret",
        "user_admin": "admin-secret", "user_alice": "alice-secret"})]
    assert plain_users(entries) == {"admin": "admin-secret", "alice": "alice-secret"}
    assert client_credentials(entries) == ("admin", "admin-secret")
    assert single_entry(entries) is entries[0]


def test_kafka_scram_example() -> None:
    entries = parse_jaas_config(KAFKA_SCRAM)
    assert entries == [JaasEntry(SCRAM_LOGIN_MODULE, "required",
                                 {"username": "admin", "password": "admin-secret"})]
    assert plain_users(entries) == {}
    assert client_credentials(entries) == ("admin", "admin-secret")


def test_kafka_client_example() -> None:
    entries = parse_jaas_config(KAFKA_PLAIN_CLIENT)
    assert client_credentials(entries) == ("alice", "alice-secret")
    assert plain_users(entries) == {}


def test_multiline_value_as_in_a_properties_file() -> None:
    text = (f"{PLAIN_LOGIN_MODULE} required\n"
            '    username="admin"\n    password="admin-secret"\r\n\tuser_bob="b";\n')
    entries = parse_jaas_config(text)
    assert entries[0].options == {"username": "admin", "password": "admin-secret",
                                  "user_bob": "b"}


@pytest.mark.parametrize("flag", ["required", "REQUIRED", "Requisite", "sufficient",
                                  "optional"])
def test_control_flags_are_case_insensitive(flag: str) -> None:
    assert parse_jaas_config(f"m {flag};")[0].flag == flag.lower()


def test_several_entries_in_order() -> None:
    entries = parse_jaas_config(f"{KAFKA_SCRAM}\n{KAFKA_PLAIN_BROKER} x optional;")
    assert [e.login_module for e in entries] == [SCRAM_LOGIN_MODULE, PLAIN_LOGIN_MODULE, "x"]
    assert entries[2] == JaasEntry("x", "optional", {})
    assert plain_users(entries) == {"admin": "admin-secret", "alice": "alice-secret"}
    with pytest.raises(ValueError, match="contains 3 login modules, should be 1 module"):
        single_entry(entries)


def test_unquoted_and_single_quoted_values() -> None:
    entries = parse_jaas_config("m required a=plain-value b = 'single q' c=x.y:z@w;")
    assert entries[0].options == {"a": "plain-value", "b": "single q", "c": "x.y:z@w"}


def test_quoted_values_keep_separators_and_empty_values() -> None:
    entries = parse_jaas_config("m required a=\"x;y=z /* no */ // no\" b=\"\" c='';")
    assert entries[0].options == {"a": "x;y=z /* no */ // no", "b": "", "c": ""}


@pytest.mark.parametrize("quoted, value", [
    (r'"a\"b"', 'a"b'),
    (r"'a\'b'", "a'b"),
    (r'"a\\b"', "a\\b"),
    (r'"\n\t\r\b\f"', "\n\t\r\b\f"),
    (r'"\101\60\0"', "A0\0"),
    (r'"\477"', "\x277"),  # as Java: three digits only when the first is 0-3
    (r'"\q"', "q"),
    ('"it\'s"', "it's"),
    ("'say \"hi\"'", 'say "hi"'),
])
def test_backslash_escapes_as_java_streamtokenizer(quoted: str, value: str) -> None:
    assert parse_jaas_config(f"m required k={quoted};")[0].options == {"k": value}


def test_comments_are_skipped() -> None:
    text = ("/* the broker */ m required // the users follow\n"
            "  user_a=\"1\" /* comment; with = signs */ user_b=\"2\"; / lone slash comment")
    assert parse_jaas_config(text)[0].options == {"user_a": "1", "user_b": "2"}


def test_repeated_option_keeps_the_last_value_as_kafka() -> None:
    assert parse_jaas_config("m required a=1 a=2;")[0].options == {"a": "2"}


def test_quoted_module_name_and_key() -> None:
    entries = parse_jaas_config("\"my.Module\" 'required' \"user_a b\"=c;")
    assert entries == [JaasEntry("my.Module", "required", {"user_a b": "c"})]
    assert plain_users(entries) == {}


def test_plain_users_ignores_other_modules_and_empty_names() -> None:
    entries = parse_jaas_config(f"{SCRAM_LOGIN_MODULE} required user_x=1; "
                                f"{PLAIN_LOGIN_MODULE} required user_=2 user_y=3 usery=4;")
    assert plain_users(entries) == {"y": "3"}


def test_plain_users_first_entry_wins() -> None:
    entries = parse_jaas_config(f"{PLAIN_LOGIN_MODULE} required user_a=1; "
                                f"{PLAIN_LOGIN_MODULE} required user_a=2 user_b=3;")
    assert plain_users(entries) == {"a": "1", "b": "3"}


def test_client_credentials_absent_or_partial() -> None:
    assert client_credentials(parse_jaas_config(f"{PLAIN_LOGIN_MODULE} required "
                                                "user_a=1;")) is None
    with pytest.raises(ValueError, match="has a username but no password") as failure:
        client_credentials(parse_jaas_config(f"{PLAIN_LOGIN_MODULE} required username=a;"))
    assert PLAIN_LOGIN_MODULE in str(failure.value)
    with pytest.raises(ValueError, match="has a password but no username") as failure:
        client_credentials(parse_jaas_config("m required password=topsecret;"))
    assert "topsecret" not in str(failure.value)


def test_client_credentials_first_entry_that_has_them() -> None:
    entries = parse_jaas_config(f"a required x=1; {KAFKA_SCRAM} {KAFKA_PLAIN_CLIENT}")
    assert client_credentials(entries) == ("admin", "admin-secret")


def test_repr_hides_option_values() -> None:
    entry = parse_jaas_config(KAFKA_PLAIN_BROKER)[0]
    text = repr(entry)
    assert "secret" not in text
    assert "user_alice" in text and PLAIN_LOGIN_MODULE in text


# --- errors -----------------------------------------------------------------------------


def error(text: str, name: str = "sasl.jaas.config") -> str:
    with pytest.raises(ValueError) as failure:
        parse_jaas_config(text, name)
    message = str(failure.value)
    assert message.startswith(f"{name}: ")
    return message


def test_missing_semicolon_says_where() -> None:
    text = KAFKA_PLAIN_BROKER[:-1]
    assert error(text) == (
        "sasl.jaas.config: expected ';' after the options of "
        f"{PLAIN_LOGIN_MODULE} at character {len(text) + 1}; every entry ends with ';'")


def test_missing_semicolon_between_entries() -> None:
    message = error(f"{KAFKA_SCRAM[:-1]} {KAFKA_PLAIN_CLIENT}")
    assert "expected key=value in the options of " + SCRAM_LOGIN_MODULE in message


@pytest.mark.parametrize("text", ["", "   \n\t", "/* nothing */", "// nothing"])
def test_empty_value(text: str) -> None:
    assert "no login module given" in error(text)
    assert PLAIN_LOGIN_MODULE in error(text)  # the message shows an example


def test_missing_control_flag() -> None:
    assert error("m") == ("sasl.jaas.config: expected a control flag (required, requisite, "
                          "sufficient, optional) after m at character 2, found the end of "
                          "the value")
    assert "after m at character 2, found ';'" in error("m;")


def test_invalid_control_flag() -> None:
    assert error("m mandatory a=b;") == (
        "sasl.jaas.config: invalid control flag 'mandatory' for m at character 3: use one "
        "of required, requisite, sufficient, optional")


def test_module_name_missing() -> None:
    assert "expected a login module class name at character 1, found ';'" in error(";")
    assert "expected a login module class name at character 1, found '='" in error("=x;")


def test_option_without_equals() -> None:
    message = error("m required username password=secret;")
    assert "expected key=value in the options of m at character 21, found a word" in message
    assert "quote values that hold spaces" in message


def test_unquoted_value_with_space_does_not_leak_the_rest() -> None:
    message = error("m required password=visible hidden-part;")
    assert "found ';'" in message
    assert "hidden-part" not in message and "visible" not in message


@pytest.mark.parametrize("text, at", [
    ("m required a=;", 14), ("m required a==b;", 14), ("m required a=", 14),
])
def test_option_without_value(text: str, at: int) -> None:
    assert f"expected a value for option 'a' of m at character {at}" in error(text)


def test_unquoted_slash_starts_a_comment_and_the_error_says_so() -> None:
    message = error("m required keyTab=/etc/kafka.keytab;")
    assert "expected a value for option 'keyTab'" in message
    assert "an unquoted '/' starts a comment" in message


def test_option_name_missing() -> None:
    assert "found '='" in error("m required =b;")


def test_unterminated_quote() -> None:
    assert error('m required password="secret;') == (
        "sasl.jaas.config: the quoted value opened at character 21 is not closed with \" on "
        "the same line")
    assert "opened at character 14" in error("m required a='x\n';")
    assert "opened at character 14" in error('m required a="x\\')


def test_unterminated_comment() -> None:
    assert "the comment opened at character 12 is never closed" in error("m required /* a=b;")


def test_listener_prefixed_name_in_messages() -> None:
    name = "listener.name.sasl_plaintext.plain.sasl.jaas.config"
    assert error("m", name).startswith(f"{name}: expected a control flag")


@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_value_error(text: str) -> None:
    try:
        entries = parse_jaas_config(text)
    except ValueError:
        return
    assert entries and all(e.flag in ("required", "requisite", "sufficient", "optional")
                           for e in entries)


NAMES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                              exclude_characters="\"'/;=\\"), min_size=1, max_size=12)


def quote(value: str) -> str:
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r"))
    return f'"{escaped}"'


@given(st.lists(st.tuples(NAMES, st.sampled_from(["required", "OPTIONAL", "Sufficient"]),
                          st.dictionaries(NAMES, st.text(max_size=20), max_size=4)),
                min_size=1, max_size=3))
def test_written_entries_parse_back(
        entries: list[tuple[str, str, dict[str, str]]]) -> None:
    text = "\n".join(f"{module} {flag} "
                     + " ".join(f"{k}={quote(v)}" for k, v in options.items()) + ";"
                     for module, flag, options in entries)
    assert parse_jaas_config(text) == [JaasEntry(m, f.lower(), o) for m, f, o in entries]
