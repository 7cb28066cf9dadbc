"""deploy/compose.yaml cannot run here (no Docker engine), so it is checked by reading it."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

import shared.metrics  # noqa: F401 - registers the business metrics
from deploy.local.kafka import LocalKafka, Quorum, secured_properties
from deploy.local.processes import OPERATOR, SERVICES
from services.carrier_simulator.settings import CarrierSimulatorSettings
from services.operator.settings import OperatorSettings
from services.orders.settings import OrdersSettings
from services.payments.settings import PaymentsSettings
from services.provisioning.settings import ProvisioningSettings
from services.stripe_simulator.settings import SimulatorSettings
from shared import limits
from shared.access import AccessSettings
from shared.kafka_access import PRINCIPALS
from shared.settings import REPO_ROOT, ServiceSettings
from tests.infra import image_env

SERVICE_SETTINGS: dict[str, type[ServiceSettings]] = {
    "orders": OrdersSettings,
    "payments": PaymentsSettings,
    "provisioning": ProvisioningSettings,
}

DEPLOY = REPO_ROOT / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    parts = (str(p).split(":") for p in service.get("ports", []))
    return {int(part[-1]): int(part[-2]) for part in parts}


def reachable_from_outside(service: dict[str, Any]) -> list[str]:
    """The ports published on every interface (not bound to 127.0.0.1)."""
    return [str(p) for p in service.get("ports", []) if not str(p).startswith("127.0.0.1:")]


def test_only_the_dashboard_and_the_apis_with_tokens_are_reachable_from_other_machines(
    compose: dict[str, Any],
) -> None:
    outside = {
        name: ports
        for name, service in compose["services"].items()
        if (ports := reachable_from_outside(service))
    }
    assert outside == {"operator": ["8000:8000"], "orders": ["8001:8001"],
                       "provisioning": ["8003:8003"]}  # fmt: skip
    for name in [*SERVICES, OPERATOR]:
        env = compose["services"][name]["environment"]
        for variable in ("API_TOKENS", "OPERATOR_TOKENS"):  # compose refuses to start without
            assert env[variable].startswith(f"${{{variable}:?"), (name, variable)


def kafka_internal_address(compose: dict[str, Any]) -> str:
    listeners = str(compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"])
    internal = next(x for x in listeners.split(",") if x.startswith("INTERNAL://"))
    return internal.removeprefix("INTERNAL://")


def test_the_stack_has_kafka_postgres_the_three_services_and_a_topic_ui(
    compose: dict[str, Any],
) -> None:
    assert set(compose["services"]) == {
        "kafka", "kafka-setup", "postgres", "kafka-ui", "prometheus", "grafana", "jaeger",
        *SERVICES, OPERATOR, "stripe-simulator", "carrier-simulator",
    }  # fmt: skip
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:4.")


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_gets_every_setting_it_needs(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    env = service["environment"]
    settings_vars = {
        f.upper() for f in [*SERVICE_SETTINGS[name].model_fields, *AccessSettings.model_fields]
    }
    assert set(env) <= settings_vars, f"{name} sets variables no service reads"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == kafka_internal_address(compose)
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert set(service["depends_on"]) == {"kafka-setup", "postgres"}
    assert env["KAFKA_USERNAME"] == name  # its own principal (shared/kafka_access.py)
    assert env["KAFKA_PASSWORD"] == f"${{KAFKA_{name.upper()}_PASSWORD:?see the top of this file}}"
    assert "healthcheck" in service
    port = int(env["HTTP_PORT"])
    assert published_ports(service) == {port: port}
    assert env["HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_owns_a_database_that_postgres_creates(
    compose: dict[str, Any], name: str
) -> None:
    url = make_url(compose["services"][name]["environment"]["DATABASE_URL"])
    assert url.drivername == "postgresql+asyncpg"
    assert url.host == "postgres"
    assert url.database == name
    init_sql = (DEPLOY / "postgres" / "init-databases.sql").read_text()
    assert f"CREATE DATABASE {name};" in init_sql


@pytest.mark.parametrize(
    ("name", "settings", "client"),
    [
        ("stripe-simulator", SimulatorSettings, "payments"),
        ("carrier-simulator", CarrierSimulatorSettings, "provisioning"),
    ],
)
def test_each_simulator_is_reached_by_its_client_with_the_same_secrets(
    compose: dict[str, Any], name: str, settings: type[BaseSettings], client: str
) -> None:
    simulator = compose["services"][name]
    env = simulator["environment"]
    assert set(env) <= {f.upper() for f in settings.model_fields}, f"{name} sets what it ignores"
    assert simulator["command"] == ["python", "-m", f"services.{name.replace('-', '_')}"]
    assert "ports" not in simulator, "the outside world is reached on compose's network only"
    assert make_url(env["DATABASE_URL"]).database == name.replace("-", "_")
    init_sql = (DEPLOY / "postgres" / "init-databases.sql").read_text()
    assert f"CREATE DATABASE {name.replace('-', '_')};" in init_sql
    client_env = compose["services"][client]["environment"]
    shared = {key for key in env if key.startswith(("STRIPE_", "CARRIER_CLIENT"))}
    assert shared, "no credentials shared"
    assert all(client_env[key] == env[key] for key in shared if key in client_env)
    base = client_env["STRIPE_API_BASE" if client == "payments" else "CARRIER_API_BASE"]
    assert base.endswith(f"-http://{name}:{env['HTTP_PORT']}}}")


def test_the_files_compose_mounts_and_builds_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            assert (DEPLOY / Path(volume.split(":")[0])).exists(), volume
        if build := service.get("build"):
            assert (DEPLOY / build["context"] / build["dockerfile"]).exists()


def test_the_topic_ui_reads_the_same_broker(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka-ui"]["environment"]
    assert env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == kafka_internal_address(compose)
    assert published_ports(compose["services"]["kafka-ui"]) == {8080: 8080}


def test_prometheus_scrapes_every_service_where_it_serves_metrics(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    targets = set(job["static_configs"][0]["targets"])
    ports = {
        name: compose["services"][name]["environment"]["HTTP_PORT"]
        for name in (*SERVICES, OPERATOR)
    }
    assert targets == {f"{name}:{port}" for name, port in ports.items()}
    assert job["metrics_path"] == "/metrics/"


def test_the_grafana_dashboard_only_charts_metrics_the_services_export() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "topup.json").read_text())
    # FastStream registers its own metrics lazily, on the first message: named here.
    exported = {m.name for m in REGISTRY.collect()} | {"faststream_received_messages"}
    charted = {
        name.removesuffix("_total").removesuffix("_bucket")
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(topup_[a-z_]+|faststream_[a-z_]+)", target["expr"])
    }
    assert charted, "the dashboard charts nothing"
    assert charted <= exported, f"charted but not exported: {charted - exported}"


def test_the_operator_reads_the_broker_asks_orders_and_shares_its_tokens(
    compose: dict[str, Any],
) -> None:
    operator = compose["services"][OPERATOR]
    env = operator["environment"]
    settings_vars = {
        f.upper() for f in [*OperatorSettings.model_fields, *AccessSettings.model_fields]
    }
    assert set(env) <= settings_vars, "the operator sets variables it does not read"
    assert operator["command"] == ["python", "-m", "services.operator"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == kafka_internal_address(compose)
    for name in SERVICES:  # orders' read API, and every service's /health
        port = compose["services"][name]["environment"]["HTTP_PORT"]
        assert env[f"{name.upper()}_URL"] == f"http://{name}:{port}"
    orders = compose["services"]["orders"]["environment"]
    assert (env["OPERATOR_TOKENS"], env["API_TOKENS"]) == (
        orders["OPERATOR_TOKENS"],
        orders["API_TOKENS"],
    )
    assert set(operator["depends_on"]) == {"kafka-setup", "orders"}
    assert env["KAFKA_USERNAME"] == OPERATOR
    assert "healthcheck" in operator
    assert published_ports(operator) == {8000: 8000} == {int(env["HTTP_PORT"]): 8000}


def test_every_broker_takes_the_message_size_the_contract_counts_on(
    compose: dict[str, Any],
) -> None:
    """shared/limits.py: the broker's limit, written in the compose file and the local
    broker's settings, and our producers' limit below it, far above the contract's."""
    kafka_env = compose["services"]["kafka"]["environment"]
    assert int(kafka_env["KAFKA_MESSAGE_MAX_BYTES"]) == limits.BROKER_MAX_MESSAGE_BYTES
    local = LocalKafka(Path("/nonexistent"), port=1, controller_port=2).server_properties()
    assert int(local["message.max.bytes"]) == limits.BROKER_MAX_MESSAGE_BYTES
    assert limits.MAX_MESSAGE_BYTES * 4 < limits.PRODUCER_MAX_REQUEST_BYTES
    assert limits.PRODUCER_MAX_REQUEST_BYTES < limits.BROKER_MAX_MESSAGE_BYTES


def test_the_broker_signs_every_client_in_and_authorizes_it_as_the_local_one_does(
    compose: dict[str, Any],
) -> None:
    """deploy/local/kafka.py secured_properties, as the apache/kafka image reads them, for
    each of compose's listeners; the admin's password from the environment."""
    kafka_env = compose["services"]["kafka"]["environment"]
    password = "${KAFKA_ADMIN_PASSWORD:?see the top of this file}"
    local = secured_properties("x:1", "x:2", password)
    for listener in ("INTERNAL", "EXTERNAL", "CONTROLLER"):
        assert kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].count(f"{listener}:SASL_PLAINTEXT")
    renamed = {
        key.replace("listener.name.broker.", f"listener.name.{listener}."): value
        for key, value in local.items()
        if not key.startswith(("listeners", "advertised.", "listener.security", "inter.broker"))
        for listener in (("internal", "external") if ".broker." in key else ("",))
    }
    for name, value in image_env(renamed).items():
        assert " ".join(str(kafka_env[name]).split()) == value, name


def test_kafka_setup_gives_every_principal_its_password_and_the_ui_reads_only(
    compose: dict[str, Any],
) -> None:
    setup = compose["services"]["kafka-setup"]
    assert setup["command"][:3] == ["python", "-m", "shared.kafka_grants"]
    wanted = {"KAFKA_ADMIN_PASSWORD", *(f"KAFKA_{p.name.upper()}_PASSWORD" for p in PRINCIPALS)}
    assert set(setup["environment"]) == wanted
    carrier = compose["services"]["carrier-simulator"]["environment"]
    assert carrier["KAFKA_USERNAME"] == "carrier"  # its usage reports, as the carrier
    ui = compose["services"]["kafka-ui"]["environment"]
    assert 'username="viewer"' in ui["KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG"]


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.cluster.yaml").read_text())
    return loaded


def _same_text(value: Any) -> str:
    return " ".join(str(value).split()).replace("compose.yaml", "this file")


def test_the_cluster_file_adds_two_brokers_like_the_first_in_a_quorum_of_three(
    compose: dict[str, Any], cluster: dict[str, Any]
) -> None:
    kafka = compose["services"]["kafka"]
    first = kafka["environment"] | cluster["services"]["kafka"]["environment"]
    own = {"KAFKA_NODE_ID", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"}
    for node in (2, 3):
        peer = cluster["services"][f"kafka-{node}"]
        assert peer["image"] == kafka["image"]
        assert peer["environment"]["KAFKA_NODE_ID"] == str(node)
        assert f"kafka-{node}:19092" in peer["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        assert {k: _same_text(v) for k, v in peer["environment"].items() if k not in own} == {
            k: _same_text(v) for k, v in first.items() if k not in own
        }
    assert first["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"


def test_the_cluster_replicates_as_the_local_one_does(cluster: dict[str, Any]) -> None:
    voters = {1: "x:1", 2: "x:2", 3: "x:3"}
    local = LocalKafka(
        Path("/nonexistent"), port=1, controller_port=2, quorum=Quorum(1, voters, "id")
    ).server_properties()
    replication = {k: v for k, v in local.items() if "replication" in k or "isr" in k}
    env = cluster["services"]["kafka"]["environment"]
    shared_keys = {k: v for k, v in image_env(replication).items() if "SHARE" not in k}
    assert shared_keys == {k: env[k] for k in shared_keys}
    assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")


def test_in_the_cluster_every_kafka_client_knows_all_three_brokers(
    compose: dict[str, Any], cluster: dict[str, Any]
) -> None:
    brokers = "kafka:19092,kafka-2:19092,kafka-3:19092"
    clients = [n for n, s in compose["services"].items()
               if "KAFKA_BOOTSTRAP_SERVERS" in s.get("environment", {})]  # fmt: skip
    assert clients
    for name in clients:
        assert cluster["services"][name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == brokers
    assert cluster["services"]["kafka-setup"]["command"][-1] == brokers
    for name in ("orders", "payments", "provisioning", "operator"):
        env = cluster["services"][name]["environment"]
        # Said, not chosen from the brokers a service happens to see when it starts.
        assert (env["KAFKA_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    ui = cluster["services"]["kafka-ui"]["environment"]
    assert ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == brokers
