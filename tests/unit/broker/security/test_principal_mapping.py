"""ssl.principal.mapping.rules against Kafka's own cases (SslPrincipalMapperTest): which
rule texts are valid, how a list splits, and the names subjects map to."""

from __future__ import annotations

import pytest

from odradek.broker.security.principal_mapping import (
    IDENTITY,
    NoMatchingRule,
    PrincipalMapper,
    parse_rules,
)


@pytest.mark.parametrize("rules", [
    "DEFAULT",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
    "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
    "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
    "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
    "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
    "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
])
def test_valid_rules(rules: str) -> None:
    assert parse_rules(rules)


@pytest.mark.parametrize("rules", [
    "default", "DEFAUL", "DEFAULT/L", "DEFAULT/U",
    "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
    "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
    "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
    "RULE:^CN=((.*?),OU=x$/$1/",  # not a regular expression
])
def test_invalid_rules(rules: str) -> None:
    with pytest.raises(ValueError, match="Invalid rule"):
        parse_rules(rules)


def test_names_as_kafka_maps_them() -> None:
    mapper = PrincipalMapper.of(", ".join([
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
        "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
        "DEFAULT",
    ]))
    assert mapper.name("CN=Duke,OU=ServiceUsers,O=Org,C=US") == "duke"
    assert mapper.name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US") == "duke@sme"
    assert mapper.name("cn=duke,ou=sme,dc=mycp,dc=com") == "DUKE@SME"
    assert mapper.name("cN=duke,OU=JavaSoft,O=Sun Microsystems") == "DUKE"
    assert mapper.name("OU=JavaSoft,O=Sun Microsystems,C=US") == \
        "OU=JavaSoft,O=Sun Microsystems,C=US"


def test_escaped_comma_in_a_pattern() -> None:
    mapper = PrincipalMapper.of(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT")
    assert mapper.name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz") == r"Tkac\, Adam"


@pytest.mark.parametrize(("text", "count"), [
    ("", 0), ("DEFAULT", 1), ("RULE://", 1), ("RULE:/.*/", 1), ("RULE:/.*/L", 1),
    ("  RULE:// ,  DEFAULT  ", 2), (",   , , ,      , , ,   ", 0),
    (",,RULE://,,,DEFAULT,,", 2),
    ("  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  ", 3),
    ("RULE:,RULE:,/,RULE:,\\//U,RULE:,/RULE:,/,RULE:,RULE:,/L,RULE:,/L,RULE:, DEFAULT, "
     "/DEFAULT/,DEFAULT", 5),
])
def test_rules_split_as_kafka_splits_them(text: str, count: int) -> None:
    assert len(parse_rules(text)) == count


def test_back_references_beyond_the_groups_are_literal() -> None:
    # Kafka's Rule.escape: $4 with three groups is the text "$4"; $12 with one group is
    # group 1 then "2".
    three = PrincipalMapper.of("RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$4/")
    assert three.name("CN=a,OU=b,O=c") == "a@$4"
    one = PrincipalMapper.of("RULE:^CN=(.*?)$/$12/")
    assert one.name("CN=a") == "a2"


def test_no_rule_applies() -> None:
    mapper = PrincipalMapper.of("RULE:^CN=(.*?),OU=ServiceUsers$/$1/")
    with pytest.raises(NoMatchingRule):
        mapper.name("CN=mallory,OU=Outsiders")
    assert IDENTITY.name("CN=x") == "CN=x"
