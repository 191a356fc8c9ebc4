"""TLS and SASL on real listeners, with real clients (issue 15).

One three-node cluster whose nodes each have the listeners a secured deployment uses:

* INTERNAL, SASL_SSL with PLAIN: the inter-broker listener, so replication and the
  brokers' own requests to each other (transaction markers) authenticate too;
* SSL with ``ssl.client.auth=required``: mutual TLS;
* SASL_SSL and SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512;
* PLAINTEXT, which the tests use to set things up.

Each client library connects the way its users configure it for a secure Kafka; wrong
passwords, unknown users, missing, expired or untrusted certificates and the wrong protocol
on a port are refused with the error Kafka gives, and the nodes carry on serving.
"""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from odradek.broker.kafka import codec
from odradek.broker.kafka.client import KafkaConnection
from tests.certs import CertificateAuthority, Issued
from tests.helpers import unique_name
from tests.integration.harness import Cluster, free_port, metric
from tests.requirements import require

pytestmark = pytest.mark.integration

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
BROKER_USER = ("broker", "broker-secret")
LISTENERS = ("INTERNAL", "SSL", "SASL_SSL", "SASL_PLAINTEXT", "REAUTH", "TLS")
REAUTH_MS = 1500


@dataclass
class Secured:
    cluster: Cluster
    ca: CertificateAuthority
    ports: dict[str, list[int]]  # listener -> each node's port
    client: Issued  # a client certificate the CA signed (CN=alice-client)

    def bootstrap(self, listener: str) -> str:
        host = "localhost" if listener not in ("PLAINTEXT", "REAUTH") else "127.0.0.1"
        return ",".join(f"{host}:{p}" for p in self.ports[listener])


def _plain_jaas(users: dict[str, str], me: tuple[str, str] | None = None) -> str:
    options = " ".join(f'user_{u}="{p}"' for u, p in users.items())
    own = f'username="{me[0]}" password="{me[1]}" ' if me else ""
    return f"org.apache.kafka.common.security.plain.PlainLoginModule required {own}{options};"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("security")
    ca = CertificateAuthority(tmp / "certs")
    server = ca.issue("broker", server=True, key_password="key-pass")
    client = ca.issue("alice-client")
    c = Cluster(tmp, 3)
    ports: dict[str, list[int]] = {name: [] for name in (*LISTENERS, "PLAINTEXT")}
    for n in c.nodes:
        mine = {name: free_port() for name in LISTENERS}
        for name, port in mine.items():
            ports[name].append(port)
        ports["PLAINTEXT"].append(n.kafka_port)
        cfg = yaml.safe_load(n.config_path.read_text())
        cfg["listeners"] = ",".join([f"PLAINTEXT://127.0.0.1:{n.kafka_port}"] + [
            f"{name}://127.0.0.1:{port}" for name, port in mine.items()])
        cfg["advertised.listeners"] = ",".join([f"PLAINTEXT://127.0.0.1:{n.kafka_port}"] + [
            f"{name}://localhost:{port}" for name, port in mine.items()])
        # CONTROLLER: the controllers' gRPC listener (Raft, registration, heartbeats,
        # the metadata stream), TLS with mutual authentication.
        cfg["listener.security.protocol.map"] = (
            "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL,SSL:SSL,SASL_SSL:SASL_SSL,"
            "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SSL,REAUTH:SASL_PLAINTEXT,TLS:SSL")
        cfg["inter.broker.listener.name"] = "INTERNAL"
        cfg["sasl.mechanism.inter.broker.protocol"] = "PLAIN"
        cfg["ssl.keystore.location"] = str(server.pem)
        cfg["ssl.key.password"] = "key-pass"
        cfg["ssl.truststore.location"] = str(ca.ca_file)
        cfg["sasl.enabled.mechanisms"] = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER"
        # OAUTHBEARER: Kafka's unsecured development tokens, which must carry scope kafka.
        cfg["listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            'unsecuredValidatorRequiredScope="kafka";')
        cfg["listener.name.internal.sasl.enabled.mechanisms"] = "PLAIN"
        cfg["listener.name.internal.plain.sasl.jaas.config"] = _plain_jaas(
            {BROKER_USER[0]: BROKER_USER[1]}, BROKER_USER)
        cfg["listener.name.ssl.ssl.client.auth"] = "required"
        # Client certificates name their principal by rule, and only those named
        # <user>-client have one (no DEFAULT): User:ALICE for alice-client.
        cfg["listener.name.ssl.ssl.principal.mapping.rules"] = \
            "RULE:^CN=([a-z]+)-client$/$1/U"
        # REAUTH: SASL sessions of 1.5 s (KIP-368), for the re-authentication test only.
        cfg["listener.name.reauth.connections.max.reauth.ms"] = REAUTH_MS
        cfg["listener.name.reauth.sasl.enabled.mechanisms"] = "PLAIN"
        for name in ("sasl_ssl", "sasl_plaintext", "reauth"):
            cfg[f"listener.name.{name}.plain.sasl.jaas.config"] = _plain_jaas(USERS)
        n.config_path.write_text(yaml.safe_dump(cfg))
    c.start()
    _add_scram_users(",".join(f"127.0.0.1:{p}" for p in ports["PLAINTEXT"]))
    yield Secured(c, ca, ports, client)
    c.kill_all()


# SCRAM users live in the cluster metadata: (user, mechanism) -> password.
SCRAM_USERS = {("carol", "SCRAM-SHA-256"): "carol-secret",
               ("dave", "SCRAM-SHA-512"): "dave-secret"}


def _add_scram_users(bootstrap: str) -> None:
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        result = admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(user, ScramMechanism[mech.replace("-", "_")], pw)
            for (user, mech), pw in SCRAM_USERS.items()])
        assert all(not err for err in result.values()), result
    finally:
        admin.close()


def _sasl(s: Secured, listener: str, user: str, password: str,
          mechanism: str = "PLAIN") -> dict[str, Any]:
    """kafka-python's settings for a SASL listener."""
    kw: dict[str, Any] = {"bootstrap_servers": s.bootstrap(listener),
                          "security_protocol": listener, "sasl_mechanism": mechanism,
                          "sasl_plain_username": user, "sasl_plain_password": password}
    if listener == "SASL_SSL":
        kw["ssl_cafile"] = str(s.ca.ca_file)
    return kw


def _round_trip(producer_kw: dict[str, Any], consumer_kw: dict[str, Any], topic: str,
                n: int = 20) -> None:
    producer = KafkaProducer(acks="all", **producer_kw)
    try:
        for i in range(n):
            producer.send(topic, key=str(i).encode(), value=f"v{i}".encode())
        producer.flush(30)
    finally:
        producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", **consumer_kw)
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += [r.value for r in records]
    finally:
        consumer.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(n))


def _topic(s: Secured, partitions: int = 3) -> str:
    name = unique_name("sec")
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap("PLAINTEXT"))
    try:
        admin.create_topics([NewTopic(name, partitions, 3)])
    finally:
        admin.close()
    return name


def test_kafka_python_over_sasl_ssl_plain_replicates_over_a_sasl_ssl_inter_broker_listener(
        secured: Secured) -> None:
    """acks=all on RF=3 completes only when the followers fetched over INTERNAL (SASL_SSL
    with the brokers' own PLAIN identity)."""
    topic = _topic(secured)
    kw = _sasl(secured, "SASL_SSL", "alice", USERS["alice"])
    _round_trip(kw, kw, topic)
    for n in secured.cluster.nodes:
        assert metric(n, "odradek_authentications_total", 'listener="INTERNAL"') > 0


def test_confluent_kafka_over_mutual_tls(secured: Secured) -> None:
    from confluent_kafka import Consumer, Producer

    topic = _topic(secured)
    conf = {"bootstrap.servers": secured.bootstrap("SSL"), "security.protocol": "SSL",
            "ssl.ca.location": str(secured.ca.ca_file),
            "ssl.certificate.location": str(secured.client.cert),
            "ssl.key.location": str(secured.client.key)}
    p = Producer({**conf, "acks": "all"})
    for i in range(10):
        p.produce(topic, value=f"m{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": unique_name("mtls"), "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(10))


def test_aiokafka_over_sasl_plaintext(secured: Secured) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = _topic(secured, partitions=1)
    kw = {"bootstrap_servers": secured.bootstrap("SASL_PLAINTEXT"),
          "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
          "sasl_plain_username": "bob", "sasl_plain_password": USERS["bob"]}

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(acks="all", **kw)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"a{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **kw)
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=10_000, max_records=5)
            return [m.value for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [f"a{i}".encode() for i in range(5)]


def test_kcat_over_sasl_ssl(secured: Secured) -> None:
    require(shutil.which("kcat") is not None, "kcat is not installed (apt-get install kcat)")
    topic = _topic(secured, partitions=1)
    common = ["kcat", "-b", secured.bootstrap("SASL_SSL"), "-X", "security.protocol=SASL_SSL",
              "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=alice",
              "-X", f"sasl.password={USERS['alice']}",
              "-X", f"ssl.ca.location={secured.ca.ca_file}", "-t", topic]
    subprocess.run([*common, "-P"], input=b"k1\nk2\n", check=True, timeout=60)
    out = subprocess.run([*common, "-C", "-e", "-o", "beginning", "-q"], check=True,
                         capture_output=True, timeout=60).stdout
    assert out.split() == [b"k1", b"k2"]


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("mallory", "x")])
def test_wrong_password_and_unknown_user_are_refused(secured: Secured, user: str,
                                                      password: str) -> None:
    from confluent_kafka import KafkaError as RdKafkaError
    from confluent_kafka import Producer

    node = secured.cluster.nodes[0]
    before = metric(node, "odradek_authentication_failures_total", 'listener="SASL_SSL"')
    errors: list[Any] = []
    producer = Producer({"bootstrap.servers": f"localhost:{secured.ports['SASL_SSL'][0]}",
                         "security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                         "sasl.username": user, "sasl.password": password,
                         "ssl.ca.location": str(secured.ca.ca_file),
                         "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        producer.poll(0.5)
    assert errors and errors[0].code() == RdKafkaError._AUTHENTICATION, errors
    assert "Authentication failed" in errors[0].str()
    assert metric(node, "odradek_authentication_failures_total",
                  'listener="SASL_SSL"') > before


def _request(api_key: int, version: int, data: dict[str, Any]) -> bytes:
    return bytes(codec.encode_request(codec.build_request(api_key, version, data), 1, "t"))


def _tls_client(s: Secured, cert: Issued | None, ca_file: Path | None = None
                ) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file or s.ca.ca_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


def _handshake(s: Secured, ctx: ssl.SSLContext) -> bytes:
    """TLS to node 1's mutual-TLS listener, then ApiVersions; what comes back (b"" when
    the node closed the connection)."""
    with socket.create_connection(("127.0.0.1", s.ports["SSL"][0]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls_sock:
            tls_sock.sendall(_request(18, 0, {}))
            try:
                return tls_sock.recv(4)
            except (ssl.SSLError, ConnectionError):
                return b""


def test_mutual_tls_refuses_missing_expired_and_untrusted_certificates(
        secured: Secured, tmp_path: Path) -> None:
    assert len(_handshake(secured, _tls_client(secured, secured.client))) == 4
    expired = secured.ca.issue("expired-client", expired=True)
    stranger_ca = CertificateAuthority(tmp_path / "other", "Stranger CA")
    stranger = stranger_ca.issue("stranger")
    # Trusted and valid, but no ssl.principal.mapping.rules rule names it.
    unnamed = secured.ca.issue("bob")
    for cert in (None, expired, stranger, unnamed):
        try:
            got = _handshake(secured, _tls_client(secured, cert))
        except (ssl.SSLError, ConnectionError):
            got = b""
        assert got == b"", f"the node answered a client with certificate {cert}"
    # A client that does not trust the node's CA gives up on its own.
    with pytest.raises(ssl.SSLError):
        _handshake(secured, _tls_client(secured, secured.client, stranger_ca.ca_file))
    assert all(n.alive() for n in secured.cluster.nodes)


def test_wrong_protocol_on_a_port_is_refused_and_the_node_serves_on(secured: Secured) -> None:
    node = secured.cluster.nodes[0]
    # Plaintext Kafka to a TLS port: the TLS layer drops it.
    with socket.create_connection(("127.0.0.1", secured.ports["SASL_SSL"][0]), timeout=10) as s:
        s.sendall(_request(18, 0, {}))
        s.settimeout(10)
        reply = b""
        while chunk := s.recv(4096):  # at most a TLS alert, then the close
            reply += chunk
        assert not reply or reply[0] == 0x15, reply  # 0x15: a TLS alert record
    # TLS to a plaintext port: the ClientHello is not a Kafka frame.
    ctx = ssl.create_default_context(cafile=str(secured.ca.ca_file))
    with socket.create_connection(("127.0.0.1", node.kafka_port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
    # A SASL listener closes a connection that skips authentication.
    with socket.create_connection(("127.0.0.1", secured.ports["SASL_PLAINTEXT"][0]),
                                  timeout=10) as s:
        s.sendall(_request(3, 1, {"topics": None}))
        s.settimeout(10)
        assert s.recv(64) == b""
    _round_trip(*[_sasl(secured, "SASL_PLAINTEXT", "alice", USERS["alice"])] * 2,
                _topic(secured, 1), n=3)
    assert all(n.alive() for n in secured.cluster.nodes)


def test_a_node_refuses_to_start_with_an_unusable_key_store(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 1)
    n = c.nodes[0]
    cfg = yaml.safe_load(n.config_path.read_text())
    cfg["listeners"] = f"SSL://127.0.0.1:{n.kafka_port}"
    cfg["ssl.keystore.location"] = str(tmp_path / "missing.pem")
    n.config_path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RuntimeError, match="ssl.keystore.location .*missing.pem does not exist"):
        n.start(timeout=20)


@pytest.mark.parametrize("user,mechanism", list(SCRAM_USERS))
def test_scram_logins_with_each_client(secured: Secured, user: str, mechanism: str) -> None:
    """A user the cluster metadata holds logs in with SCRAM from kafka-python, librdkafka
    and aiokafka; the same user with the other mechanism (no credential) is refused."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from confluent_kafka import KafkaError as RdKafkaError
    from confluent_kafka import Producer

    password = SCRAM_USERS[(user, mechanism)]
    topic = _topic(secured, 1)
    kw = _sasl(secured, "SASL_SSL", user, password, mechanism)
    _round_trip(kw, kw, topic, n=5)

    conf = {"bootstrap.servers": secured.bootstrap("SASL_PLAINTEXT"),
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": mechanism,
            "sasl.username": user, "sasl.password": password}
    p = Producer(conf)
    p.produce(topic, b"from-librdkafka")
    assert p.flush(30) == 0

    async def aio() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=secured.bootstrap("SASL_PLAINTEXT"),
            security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
            sasl_plain_username=user, sasl_plain_password=password)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"from-aiokafka")
        finally:
            await producer.stop()

    asyncio.run(aio())

    other = "SCRAM-SHA-512" if mechanism == "SCRAM-SHA-256" else "SCRAM-SHA-256"
    errors: list[Any] = []
    refused = Producer({**conf, "sasl.mechanisms": other, "error_cb": errors.append})
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        refused.poll(0.5)
    assert errors and errors[0].code() == RdKafkaError._AUTHENTICATION, errors


def test_java_client_over_sasl_ssl_scram_and_mutual_tls(secured: Secured,
                                                        tmp_path: Path) -> None:
    """Kafka 4.1's Java client (its console producer, consumer and admin tool), configured
    as for a secured Kafka: SCRAM-SHA-512 over SASL_SSL, a client certificate over SSL, and
    TLS alone, SASL_SSL with PLAIN and with SCRAM-SHA-256, with PEM trust and key stores."""
    from tests.compat.kafka_tools import (
        CONSOLE_CONSUMER,
        CONSOLE_PRODUCER,
        TOPICS,
        KafkaTools,
        kafka_tools_lib,
    )

    lib = kafka_tools_lib()
    scram = tmp_path / "scram.properties"
    scram.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="dave" password="{SCRAM_USERS[("dave", "SCRAM-SHA-512")]}";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={secured.ca.ca_file}\n")
    mtls = tmp_path / "mtls.properties"
    keystore = tmp_path / "client-keystore.pem"
    keystore.write_bytes(secured.client.key.read_bytes() + secured.client.cert.read_bytes())
    mtls.write_text(
        "security.protocol=SSL\n"
        f"ssl.truststore.type=PEM\nssl.truststore.location={secured.ca.ca_file}\n"
        f"ssl.keystore.type=PEM\nssl.keystore.location={keystore}\n")
    topic = _topic(secured, 2)

    over_scram = KafkaTools("java", lib, secured.bootstrap("SASL_SSL"))
    listed = over_scram.ok(TOPICS, "--list", "--command-config", str(scram))
    assert topic in listed.split()
    over_scram.ok(CONSOLE_PRODUCER, "--topic", topic, "--producer.config", str(scram),
                  stdin="s1\ns2\n")
    over_tls = KafkaTools("java", lib, secured.bootstrap("SSL"))
    over_tls.ok(CONSOLE_PRODUCER, "--topic", topic, "--producer.config", str(mtls),
                stdin="t1\n")
    # The other ways in: TLS alone, SASL_SSL with PLAIN and with SCRAM-SHA-256.
    trust = f"ssl.truststore.type=PEM\nssl.truststore.location={secured.ca.ca_file}\n"
    others = {
        "TLS": "security.protocol=SSL\n" + trust,
        "SASL_SSL": "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
                    "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
                    f'required username="alice" password="{USERS["alice"]}";\n' + trust,
    }
    others_scram = ("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n"
                    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                    f'required username="carol" password="{SCRAM_USERS[("carol", "SCRAM-SHA-256")]}";\n'
                    + trust)
    for n, (listener, props) in enumerate([*others.items(), ("SASL_SSL", others_scram)]):
        config = tmp_path / f"other{n}.properties"
        config.write_text(props)
        KafkaTools("java", lib, secured.bootstrap(listener)).ok(
            CONSOLE_PRODUCER, "--topic", topic, "--producer.config", str(config),
            stdin=f"o{n}\n")
    r = over_tls.run(CONSOLE_CONSUMER, "--topic", topic, "--from-beginning",
                     "--max-messages", "6", "--timeout-ms", "20000",
                     "--consumer.config", str(mtls))
    assert r.returncode == 0, str(r)
    assert sorted(r.stdout.split()) == ["o0", "o1", "o2", "s1", "s2", "t1"], str(r)

    # A wrong SCRAM password: the Java client reports Kafka's authentication error.
    scram.write_text(scram.read_text().replace("dave-secret", "not-it"))
    r = over_scram.run(TOPICS, "--list", "--command-config", str(scram), timeout=60)
    assert r.returncode != 0 and "Authentication failed" in r.output, str(r)


def test_describe_configs_hides_secrets(secured: Secured) -> None:
    """ssl.key.password & co. are Kafka PASSWORD keys: described as set and sensitive, with
    no value."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": secured.bootstrap("PLAINTEXT")})
    resource = ConfigResource(ResourceType.BROKER, str(secured.cluster.nodes[0].node_id))
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    password = configs["ssl.key.password"]
    assert password.is_sensitive and password.value is None
    assert not configs["ssl.keystore.location"].is_sensitive
    assert configs["ssl.keystore.location"].value.endswith("broker.pem")


def test_the_controller_listener_requires_mutual_tls(secured: Secured) -> None:
    """The cluster formed over CONTROLLER:SSL (the fixture's nodes registered and elected
    over it); a client without a certificate, or without TLS, gets nothing from it."""
    import grpc

    from odradek.controller.rpc import raft_pb2, raft_pb2_grpc

    node = secured.cluster.nodes[0]
    address = yaml.safe_load(node.config_path.read_text())["controller.listener"]

    def describe(channel: grpc.Channel) -> object:
        return raft_pb2_grpc.RaftServiceStub(channel).DescribeQuorum(
            raft_pb2.DescribeQuorumRequest(), timeout=5)

    with grpc.insecure_channel(address) as plain:
        with pytest.raises(grpc.RpcError):
            describe(plain)
    roots = secured.ca.ca_file.read_bytes()
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(roots)) as anonymous:
        with pytest.raises(grpc.RpcError):
            describe(anonymous)
    client = secured.client
    creds = grpc.ssl_channel_credentials(roots, client.key.read_bytes(),
                                         client.cert.read_bytes())
    with grpc.secure_channel(address, creds) as trusted:
        assert describe(trusted) is not None


def test_the_cli_connects_with_command_config(secured: Secured, tmp_path: Path) -> None:
    """odradek's admin commands take Kafka's client properties file (--command-config):
    SCRAM over SASL_SSL for kafka-python-backed commands (topics, produce, consume) and
    for our own client's (users)."""
    config = tmp_path / "client.properties"
    config.write_text(
        "# as for kafka-topics.sh\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \\\n"
        f'  required username="carol" password="{SCRAM_USERS[("carol", "SCRAM-SHA-256")]}";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={secured.ca.ca_file}\n")
    topic = _topic(secured, 1)

    def odradek(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("odradek")), *args, "--bootstrap",
             secured.bootstrap("SASL_SSL"), "--command-config", str(config)],
            input=stdin, capture_output=True, text=True, timeout=60)

    listed = odradek("topics", "list", "--json")
    assert listed.returncode == 0 and topic in listed.stdout, listed.stderr
    produced = odradek("produce", topic, stdin="c1\nc2\n")
    assert produced.returncode == 0, produced.stderr
    consumed = odradek("consume", topic, "--from-beginning", "--max-messages", "2",
                       "--timeout-ms", "20000")
    assert consumed.returncode == 0 and consumed.stdout.split() == ["c1", "c2"], consumed
    users = odradek("users", "list", "--json")
    assert users.returncode == 0 and "dave" in users.stdout, users.stderr
    config.write_text(config.read_text().replace("carol-secret", "wrong"))
    refused = odradek("users", "list")
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr, refused


def test_hostile_sasl_exchanges_are_refused_and_the_node_serves_on(secured: Secured) -> None:
    """Junk where SASL tokens go: each connection is answered or closed, never more."""
    import random

    rng = random.Random(15)
    port = secured.ports["SASL_PLAINTEXT"][0]

    def exchange(*frames: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            for f in frames:
                s.sendall(f)
            s.settimeout(5)
            out = b""
            try:
                while chunk := s.recv(65536):
                    out += chunk
            except (TimeoutError, ConnectionError):
                pass
            return out

    junk = [rng.randbytes(n) for n in (0, 1, 7, 300, 100_000)]
    for token in junk:
        # SaslHandshake v0, then a bare token of junk (the v0 exchange has no Kafka header).
        exchange(_request(17, 0, {"mechanism": "PLAIN"}),
                 len(token).to_bytes(4, "big") + token)
        exchange(_request(17, 0, {"mechanism": "SCRAM-SHA-512"}),
                 len(token).to_bytes(4, "big") + token)
        exchange(_request(17, 1, {"mechanism": "SCRAM-SHA-256"}),
                 _request(36, 2, {"auth_bytes": token}))
    exchange(_request(17, 1, {"mechanism": "P" * 30_000}))
    exchange(_request(36, 2, {"auth_bytes": b"\0alice\0alice-secret"}))  # no handshake
    node = secured.cluster.nodes[0]
    assert node.alive()
    assert "Traceback" not in node.logs(200_000)
    _round_trip(*[_sasl(secured, "SASL_PLAINTEXT", "alice", USERS["alice"])] * 2,
                _topic(secured, 1), n=3)


def test_sessions_expire_and_clients_reauthenticate(secured: Secured, tmp_path: Path) -> None:
    """KIP-368 on the REAUTH listener (sessions of 1.5 s): Kafka's Java client and
    librdkafka, told the session lifetime by SaslAuthenticate, renew their sessions on
    their connections and keep producing; nothing is lost. A connection that does not
    renew in time is closed at its next request (the unit tests cover that rule)."""
    from confluent_kafka import Producer

    from tests.compat.kafka_tools import CONSOLE_PRODUCER, KafkaTools, kafka_tools_lib

    labels = 'listener="REAUTH"'

    def total(name: str) -> float:  # over the nodes: the partition's leader is any of them
        return sum(metric(n, name, labels) for n in secured.cluster.nodes)

    topic = _topic(secured, 1)
    bootstrap = f"127.0.0.1:{secured.ports['REAUTH'][0]}"
    before = total("odradek_reauthentications_total")
    props = tmp_path / "plain.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="alice" password="{USERS["alice"]}";\n')
    tools = KafkaTools("java", kafka_tools_lib(), bootstrap)
    java = subprocess.Popen(
        [tools.java, "-cp", tools.classpath, CONSOLE_PRODUCER, "--bootstrap-server",
         bootstrap, "--topic", topic, "--producer.config", str(props)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert java.stdin is not None
    for i in range(12):  # 4.8 s: three session lifetimes
        java.stdin.write(f"j{i}\n")
        java.stdin.flush()
        time.sleep(0.4)
    _, err = java.communicate(timeout=60)  # closes stdin: the producer flushes and exits
    assert java.returncode == 0, err
    renewed = total("odradek_reauthentications_total") - before
    assert renewed >= 1, (renewed, err[-2000:])

    before = total("odradek_reauthentications_total")
    delivered: list[object] = []
    p = Producer({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                  "sasl.mechanisms": "PLAIN", "sasl.username": "bob",
                  "sasl.password": USERS["bob"]})
    for i in range(10):  # 4 s
        p.produce(topic, f"r{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
        p.poll(0)
        time.sleep(0.4)
    assert p.flush(30) == 0
    assert delivered == [None] * 10
    assert total("odradek_reauthentications_total") - before >= 1
    consumer = KafkaConsumer(topic, bootstrap_servers=secured.bootstrap("PLAINTEXT"),
                             auto_offset_reset="earliest")
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 22 and time.monotonic() < deadline:
        got += [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs]
    consumer.close()
    assert sorted(got) == sorted([f"j{i}".encode() for i in range(12)]
                                 + [f"r{i}".encode() for i in range(10)])


def test_oauthbearer_with_unsecured_tokens(secured: Secured) -> None:
    """OAUTHBEARER in Kafka's unsecured mode: librdkafka's own unsecure JWT and kafka-python
    with a token provider get in as the token's subject; an expired token and one without
    the required scope get Kafka's error challenge, then SASL_AUTHENTICATION_FAILED."""
    from confluent_kafka import Producer
    from kafka.net.sasl.oauth import AbstractTokenProvider

    from odradek.broker.security.oauthbearer import unsecured_jws

    topic = _topic(secured)
    p = Producer({"bootstrap.servers": secured.bootstrap("SASL_PLAINTEXT"),
                  "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "OAUTHBEARER",
                  "enable.sasl.oauthbearer.unsecure.jwt": True,
                  "sasl.oauthbearer.config": "principal=alice scope=kafka", "acks": "all"})
    for i in range(5):
        p.produce(topic, value=f"o{i}".encode())
    assert p.flush(30) == 0

    class Tokens(AbstractTokenProvider):
        def token(self) -> str:
            return unsecured_jws({"sub": "bob", "iat": time.time(), "exp": time.time() + 600,
                                  "scope": "kafka"})

    consumer = KafkaConsumer(topic, bootstrap_servers=secured.bootstrap("SASL_PLAINTEXT"),
                             security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                             sasl_oauth_token_provider=Tokens(), auto_offset_reset="earliest",
                             consumer_timeout_ms=20_000)
    got = sorted(m.value for m in itertools.islice(consumer, 5))
    consumer.close()
    assert got == [f"o{i}".encode() for i in range(5)]

    port = secured.ports["SASL_PLAINTEXT"][0]
    for claims, reason in (({"sub": "bob", "exp": time.time() - 5, "scope": "kafka"},
                            "expired"),
                           ({"sub": "bob", "exp": time.time() + 600}, "required scope")):
        with KafkaConnection("127.0.0.1", port) as c:
            assert c.request(17, 1, {"mechanism": "OAUTHBEARER"}).error_code == 0
            first = f"n,,\x01auth=Bearer {unsecured_jws(claims)}\x01\x01".encode()
            challenge = c.request(36, 2, {"auth_bytes": first})
            assert challenge.error_code == 0
            assert json.loads(challenge.auth_bytes)["status"] == "invalid_token"
            final = c.request(36, 2, {"auth_bytes": b"\x01"})
            assert final.error_code == 58 and reason in final.error_message, final
    assert all(n.alive() for n in secured.cluster.nodes)


# Each way in that issue 15 names, as (listener, SASL mechanism or None, client certificate?):
# TLS alone, SASL_SSL with PLAIN and both SCRAMs, and mutual TLS.
MODES = {
    "tls": ("TLS", None, False),
    "sasl_ssl_plain": ("SASL_SSL", "PLAIN", False),
    "sasl_ssl_scram256": ("SASL_SSL", "SCRAM-SHA-256", False),
    "sasl_ssl_scram512": ("SASL_SSL", "SCRAM-SHA-512", False),
    "mutual_tls": ("SSL", None, True),
}
_LOGINS = {"PLAIN": ("alice", USERS["alice"]),
           **{mech: (user, pw) for (user, mech), pw in SCRAM_USERS.items()}}


def _librdkafka_conf(s: Secured, mode: str) -> dict[str, str]:
    listener, mechanism, cert = MODES[mode]
    conf = {"bootstrap.servers": s.bootstrap(listener), "ssl.ca.location": str(s.ca.ca_file),
            "security.protocol": "SASL_SSL" if mechanism else "SSL"}
    if mechanism:
        user, password = _LOGINS[mechanism]
        conf |= {"sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password}
    if cert:
        conf |= {"ssl.certificate.location": str(s.client.cert),
                 "ssl.key.location": str(s.client.key)}
    return conf


def test_every_python_client_and_kcat_over_every_secure_mode(secured: Secured) -> None:
    """kafka-python, confluent-kafka, aiokafka and kcat each write over TLS, SASL_SSL with
    PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and mutual TLS; every record is read back."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context
    from confluent_kafka import Producer

    kcat = shutil.which("kcat")
    require(kcat is not None, "kcat is not installed (apt-get install kcat)")
    topic = _topic(secured, 1)
    sent: list[bytes] = []
    for mode, (listener, mechanism, cert) in MODES.items():
        # kafka-python
        kw: dict[str, Any] = {"bootstrap_servers": secured.bootstrap(listener),
                              "security_protocol": "SASL_SSL" if mechanism else "SSL",
                              "ssl_cafile": str(secured.ca.ca_file)}
        if mechanism:
            user, password = _LOGINS[mechanism]
            kw |= {"sasl_mechanism": mechanism, "sasl_plain_username": user,
                   "sasl_plain_password": password}
        if cert:
            kw |= {"ssl_certfile": str(secured.client.cert),
                   "ssl_keyfile": str(secured.client.key)}
        producer = KafkaProducer(acks="all", **kw)
        producer.send(topic, f"kafka-python {mode}".encode()).get(timeout=30)
        producer.close()
        # confluent-kafka
        conf = _librdkafka_conf(secured, mode)
        p = Producer({**conf, "acks": "all"})
        p.produce(topic, f"confluent-kafka {mode}".encode())
        assert p.flush(30) == 0, mode

        # aiokafka
        async def aio(mode: str = mode) -> None:
            listener, mechanism, cert = MODES[mode]
            context = create_ssl_context(
                cafile=str(secured.ca.ca_file),
                certfile=str(secured.client.cert) if cert else None,
                keyfile=str(secured.client.key) if cert else None)
            extra: dict[str, Any] = {}
            if mechanism:
                user, password = _LOGINS[mechanism]
                extra = {"sasl_mechanism": mechanism, "sasl_plain_username": user,
                         "sasl_plain_password": password}
            producer = AIOKafkaProducer(
                bootstrap_servers=secured.bootstrap(listener), acks="all",
                security_protocol="SASL_SSL" if mechanism else "SSL", ssl_context=context,
                **extra)
            await producer.start()
            try:
                await producer.send_and_wait(topic, f"aiokafka {mode}".encode())
            finally:
                await producer.stop()

        asyncio.run(aio())
        # kcat (librdkafka's command-line client)
        subprocess.run([str(kcat), "-b", conf["bootstrap.servers"], "-t", topic, "-P",
                        *[a for k, v in conf.items() if k != "bootstrap.servers"
                          for a in ("-X", f"{k}={v}")]],
                       input=f"kcat {mode}\n".encode(), check=True, timeout=60)
        sent += [f"{client} {mode}".encode()
                 for client in ("kafka-python", "confluent-kafka", "aiokafka", "kcat")]
    consumer = KafkaConsumer(topic, bootstrap_servers=secured.bootstrap("PLAINTEXT"),
                             auto_offset_reset="earliest", consumer_timeout_ms=20_000)
    got = [m.value for m in itertools.islice(consumer, len(sent))]
    consumer.close()
    assert sorted(got) == sorted(sent)
