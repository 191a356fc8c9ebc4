"""The deployment files are consistent with what the nodes really do.

- The Grafana dashboard parses, and every PromQL expression in it names only metrics the
  nodes export (docs/metrics.md's table, which tests/unit/broker/test_metrics_doc.py keeps
  equal to the code) or Prometheus' own ``up``; promtool accepts every expression.
- The Grafana provisioning files parse and point at the compose file's Prometheus service
  and dashboard mount.
- Both compose files parse; every node's environment, laid over the image's node.yaml, is a
  valid node configuration (the node's own parser); the advertised EXTERNAL port of each
  node is the host port published for it; the quorum names every controller; Prometheus
  scrapes every node's metrics port; Grafana is only in its profile; no restart policy
  brings a killed node back by itself.

promtool (Debian package ``prometheus``) is needed for the PromQL and Prometheus config
checks: they skip with the reason by hand without it, and fail in CI (``CI=true``).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from odradek.broker.config import parse_config
from tests.requirements import require_tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "odradek.json"
COMPOSE_FILES = {
    "combined": (DEPLOY / "docker-compose.yml", DEPLOY / "prometheus.yml"),
    "dedicated": (DEPLOY / "docker-compose.dedicated.yml", DEPLOY / "prometheus.dedicated.yml"),
}
METRICS_PORT = 9100

# --- metric names ------------------------------------------------------------------------


def documented_metrics() -> set[str]:
    """Series names docs/metrics.md's table documents (histograms expanded)."""
    names: set[str] = set()
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        kind = cells[1] if len(cells) > 1 else ""
        for name in re.findall(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`", cells[0]):
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


PROMETHEUS_OWN = {"up"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (good enough for our dashboards)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range selectors
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or m.group().lower() in _KEYWORDS:
            continue  # a function or an aggregation
        names.add(m.group())
    return names


def test_metric_name_extraction() -> None:
    expr = ('histogram_quantile(0.99, sum by (api, le) (rate(odradek_request_latency_seconds_bucket'
            '{instance=~"$instance", x="a b"}[$__rate_interval]))) / on (instance) group_left () '
            'max without (kind) (up == bool 1)')
    assert metric_names(expr) == {"odradek_request_latency_seconds_bucket", "up"}


# --- the dashboard -----------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    out = []
    for panel in dash["panels"]:
        for nested in [panel, *panel.get("panels", [])]:
            for t in nested.get("targets", []):
                out.append((f"panel {nested['title']!r} {t['refId']}", t["expr"]))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
            assert m, f"variable {var['name']}: unexpected query {q!r}"
            out.append((f"variable {var['name']}", m.group(1)))
    return out


def test_dashboard_is_a_grafana_dashboard() -> None:
    dash = load_dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        assert p["targets"], f"panel {p['title']!r} has no query"
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, f"panel {p['title']!r} is wider than the grid"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance"} <= variables


def test_dashboard_covers_what_operators_watch() -> None:
    used = set().union(*(metric_names(e) for _, e in dashboard_exprs(load_dashboard())))
    for name in ("odradek_messages_in_total", "odradek_bytes_in_total", "odradek_bytes_out_total",
                 "odradek_request_latency_seconds_bucket", "odradek_under_replicated_partitions",
                 "odradek_under_min_isr_partitions", "odradek_offline_log_partitions",
                 "odradek_partitions_led", "odradek_consumer_group_lag",
                 "odradek_isr_changes_total", "process_cpu_seconds_total",
                 "process_resident_memory_bytes"):
        assert name in used, f"the dashboard does not show {name}"


def test_dashboard_uses_only_exported_metrics() -> None:
    known = documented_metrics() | PROMETHEUS_OWN
    assert "odradek_requests_total" in known and "process_cpu_seconds_total" in known
    for where, expr in dashboard_exprs(load_dashboard()):
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        unknown = names - known
        assert not unknown, (f"{where}: {sorted(unknown)} not exported by the nodes "
                             f"(docs/metrics.md) in {expr!r}")


def _promtool() -> str:
    return require_tool("promtool", "Debian package prometheus")


def _grafana_to_promql(expr: str) -> str:
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
            .replace("$instance", ".*"))


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr{i}", "expr": _grafana_to_promql(e)}
        for i, (_, e) in enumerate(dashboard_exprs(load_dashboard()))]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_grafana_provisioning() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((prov / "dashboards" / "odradek.yml").read_text())["providers"]
    mounts = {}
    for compose, _ in COMPOSE_FILES.values():
        grafana = yaml.safe_load(compose.read_text())["services"]["grafana"]
        mounts = dict(reversed(v.split(":")[:2]) for v in grafana["volumes"])
        assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
        home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        assert home == f"{providers[0]['options']['path']}/{DASHBOARD.name}"
    assert mounts[providers[0]["options"]["path"]] == "./grafana/dashboards"


# --- the compose files -------------------------------------------------------------------

_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR:-default} substitution."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def load_compose(path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load(path.read_text()), env or {})


def node_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run a node (the image's default command); the console service
    runs the same image with `console`."""
    return {name: s for name, s in compose["services"].items()
            if s.get("image", "").startswith("odradek") and "command" not in s}


def test_console_service_reads_every_node() -> None:
    compose = load_compose(COMPOSE_FILES["combined"][0], {})
    console = compose["services"]["console"]
    args = dict(a.removeprefix("--").split("=", 1) for a in console["command"][1:]
                if a.startswith("--bootstrap") or a.startswith("--listen"))
    metrics = [a.split("=", 2)[1:] for a in console["command"] if a.startswith("--metrics=")]
    nodes = node_services(compose)
    internal = {}
    for name, service in nodes.items():
        cfg = node_config(service)
        listener = next(a for a in cfg["advertised.listeners"] if a.name == "INTERNAL")
        internal[name] = f"{listener.host}:{listener.port}"
        assert [str(cfg["node.id"]), f"{name}:{cfg['metrics.listener'].rsplit(':', 1)[1]}"] \
            in metrics
    assert sorted(args["bootstrap"].split(",")) == sorted(internal.values())
    assert console["command"][0] == "console" and args["listen"] == "0.0.0.0:8080"


def node_config(service: dict[str, Any]):  # type: ignore[no-untyped-def]
    image_defaults = yaml.safe_load((DEPLOY / "image" / "node.yaml").read_text())
    env = {k: str(v) for k, v in service["environment"].items()}
    return parse_config(image_defaults, env=env)


@pytest.mark.parametrize("layout", sorted(COMPOSE_FILES))
def test_compose_nodes_are_valid_and_consistent(layout: str) -> None:
    compose_path, prometheus_path = COMPOSE_FILES[layout]
    # Host ports picked by a user (or a test) flow into the advertised addresses.
    env = {f"{k}_PORT": str(30000 + i) for i, k in enumerate(
        ["NODE1", "NODE2", "NODE3", "BROKER4", "BROKER5", "BROKER6"])}
    env["ADVERTISED_HOST"] = "kafka.example"
    for environment in (env, {}):
        compose = load_compose(compose_path, environment)
        nodes = node_services(compose)
        assert len(nodes) == (3 if layout == "combined" else 6)
        configs = {name: node_config(s) for name, s in nodes.items()}
        ids = sorted(c.node_id for c in configs.values())
        assert ids == list(range(1, len(nodes) + 1))
        controllers = {name for name, c in configs.items() if "controller" in c.roles}
        brokers = {name for name, c in configs.items() if "broker" in c.roles}
        assert len(controllers) == 3 and len(brokers) == 3
        published = []
        for name, cfg in configs.items():
            service = nodes[name]
            assert service.get("restart") != "always", f"{name}: `kill` must leave it dead"
            voters = {(i, h, p) for i, h, p in cfg["controller.quorum.voters"]}
            assert voters == {(configs[c].node_id, c, 9093) for c in controllers}, name
            assert cfg["metrics.listener"] == f"0.0.0.0:{METRICS_PORT}"
            assert str(cfg.data_dir) == "/var/lib/odradek"
            assert any(v.endswith(":/var/lib/odradek") for v in service["volumes"])
            if name in controllers:
                assert cfg["controller.listener"].endswith(":9093")
            if name not in brokers:
                assert not service.get("ports"), f"{name}: a controller publishes nothing"
                continue
            assert cfg["default.replication.factor"] == 3
            assert cfg["offsets.topic.replication.factor"] == 3
            adv = {li.name: li for li in cfg.advertised_listeners}
            bound = {li.name: li for li in cfg.listeners}
            assert set(adv) == {"INTERNAL", "EXTERNAL"}
            assert cfg["inter.broker.listener.name"] == "INTERNAL"
            assert (adv["INTERNAL"].host, adv["INTERNAL"].port) == (name, bound["INTERNAL"].port)
            (port_map,) = service["ports"]
            host_port, container_port = port_map.rsplit(":", 2)[-2:]
            assert int(container_port) == bound["EXTERNAL"].port
            assert int(host_port) == adv["EXTERNAL"].port, f"{name}: advertises another port"
            assert adv["EXTERNAL"].host == environment.get("ADVERTISED_HOST", "localhost")
            if environment:  # the service's own variable, e.g. NODE2_PORT for node2
                assert int(host_port) == int(environment[f"{name.upper()}_PORT"]), name
            published.append(int(host_port))
        if not environment:
            assert sorted(published) == [9092, 9093, 9094]
        # Prometheus scrapes every node, with the config file the compose file mounts.
        prom = compose["services"]["prometheus"]
        assert f"./{prometheus_path.name}:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
        assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
        scrape = yaml.safe_load(prometheus_path.read_text())["scrape_configs"]
        targets = {t for job in scrape for sc in job["static_configs"] for t in sc["targets"]}
        assert targets == {f"{n}:{METRICS_PORT}" for n in nodes}
        # Grafana only with --profile grafana: the default `up` must not need its image.
        assert compose["services"]["grafana"]["profiles"] == ["grafana"]
        assert all("profiles" not in s for n, s in compose["services"].items() if n != "grafana")


@pytest.mark.parametrize("layout", sorted(COMPOSE_FILES))
def test_prometheus_config_is_valid(layout: str) -> None:
    promtool = _promtool()
    _, prometheus_path = COMPOSE_FILES[layout]
    r = subprocess.run([promtool, "check", "config", "--syntax-only", str(prometheus_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_secure_compose_nodes_are_valid(tmp_path: Path) -> None:
    """deploy/secure/setup.sh's output, as docker-compose.secure.yml mounts it, makes every
    node a valid secured configuration whose key and trust stores load (what a node checks
    before it starts), with the brokers' own SASL identity; the client properties it writes
    load as Kafka client settings."""
    require_tool("openssl", "apt-get install openssl")
    from odradek.broker.cli.client_config import load as load_client_config
    from odradek.broker.cli.metadata_plane import controller_security
    from odradek.broker.security import listeners

    out = tmp_path / "generated"
    r = subprocess.run(["sh", str(DEPLOY / "secure" / "setup.sh"), str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    mounted = "/etc/odradek/certs"

    def here(value: str) -> str:
        return value.replace(mounted, str(out))

    compose = load_compose(DEPLOY / "docker-compose.secure.yml", {})
    nodes = node_services(compose)
    assert sorted(nodes) == ["node1", "node2", "node3"]
    base = yaml.safe_load(here((out / "node.yaml").read_text()))
    for name, service in nodes.items():
        assert f"./secure/generated:{mounted}:ro" in service["volumes"]
        assert "./secure/generated/node.yaml:/etc/odradek/node.yaml:ro" in service["volumes"]
        env = {k: here(str(v)) for k, v in service["environment"].items()}
        cfg = parse_config(base, env=env)
        listeners.check(cfg)  # builds the TLS contexts from the generated files
        assert {cfg.security_protocol(li.name) for li in cfg.listeners} == {"SASL_SSL"}
        assert controller_security(cfg).protocol == "SSL"
        assert cfg["authorizer.class.name"]
        assert cfg.inter_broker_credentials() is not None
        assert cfg.inter_broker_credentials()[0] == "broker"  # type: ignore[index]
        assert {"broker", "admin"} <= set(cfg.plain_users("INTERNAL"))
        assert f"/{name}.pem" in cfg["ssl.keystore.location"]
    admin = load_client_config(str(out / "admin.properties"))
    assert (admin.protocol, admin.mechanism, admin.username) == ("SASL_SSL", "PLAIN", "admin")
    app = load_client_config(str(out / "app.properties"))
    assert (app.mechanism, app.username) == ("SCRAM-SHA-512", "app")
    app.security()  # its trust store (the generated CA) loads
    # The setup service makes `app` with the password setup.sh generated for it.
    setup = " ".join(compose["services"]["setup"]["command"])
    assert "--user app --mechanism SCRAM-SHA-512 < /etc/odradek/certs/app.password" in setup
