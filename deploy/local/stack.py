"""`make run`: Kafka, optionally PostgreSQL, the three services and the operator
service (the live dashboard), in the foreground.

Ctrl-C (or SIGTERM, or a closed terminal) stops the services, then the broker and the
database, and leaves no process behind; killed hard (SIGKILL), it takes them with it
(deploy/local/lifetime.py), and the next run stops whatever an earlier one still left
(deploy/local/leftovers.py). One `make run` per clone; a busy port is named, with the
variable to change. Settings (environment variables):

  DB=sqlite|postgres   where the services keep their data (default sqlite files
                       under var/data/; postgres starts a local cluster in var/pg/run, or,
                       if the postgres user cannot enter the clone, in a folder of its own
                       under /var/tmp/topup-billing-pg; PG_HOME chooses another)
  KAFKA_PORT=9092      the broker's port;  PG_PORT=55432  the cluster's port; the broker
                       signs each process in as its own principal (passwords generated
                       once into var/kafka-credentials/, 0600; shared/kafka_access.py)
  KAFKA_BROKERS=1|3    one broker, or a cluster of three (brokers and controllers alike,
                       deploy/local/kafka_cluster.py) on KAFKA_PORT, KAFKA_PORT_2 and
                       KAFKA_PORT_3 (default: the two ports after KAFKA_PORT), its state in
                       var/kafka/cluster; the services then replicate every topic three
                       times, two in sync (shared/topic_layout.py)
  ORDERS_PORT=8001, PAYMENTS_PORT=8002, PROVISIONING_PORT=8003, OPERATOR_PORT=8000
  OPERATOR_TOKENS=name=token,...   who may use the dashboard and the operator API; unset:
                       one token for $USER, generated once into var/operator-token (0600)
  API_TOKENS=name:scope+scope=token,...   internal systems that may call the services'
                       APIs (shared/access.py); unset: one for the `topup` command line,
                       `topup-cli:read+auto-renewal`, generated once into var/api-token (0600)
  STRIPE_SIMULATOR_PORT=8010, CARRIER_SIMULATOR_PORT=8011   the outside world: a server of
                       Stripe's API and one of the eSIM partner API, processes of their own
                       (their ledgers in var/data/), paired with payments and provisioning by
                       credentials generated for each run (deploy/local/outside_world.py)
  STRIPE_API_BASE, STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET   payments on Stripe's test mode
                       (or stripe-mock) instead of the simulator, which is then not started;
  CARRIER_API_BASE, CARRIER_CLIENT_ID, CARRIER_CLIENT_SECRET   the same for a carrier's sandbox
  CARRIER_USAGE_INTERVAL_S=10, LINE_SWEEP_INTERVAL_S=5   the simulated carrier reports its
                       lines' usage every 10 s and lines are checked for alerts, expiry and
                       renewal retries every 5 s, so usage alerts and an auto-renewal show
                       within minutes (README); set either to change it
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from deploy.local import leftovers
from deploy.local.errors import StackError
from deploy.local.kafka import REPO_ROOT, LocalKafka, kafka_version
from deploy.local.kafka_cluster import LocalKafkaCluster
from deploy.local.leftovers import MARKER
from deploy.local.lock import only_run_in_this_clone
from deploy.local.outside_world import (
    CARRIER_SIMULATOR,
    SIMULATORS,
    STRIPE_SIMULATOR,
    outside_world_for,
    simulated,
)
from deploy.local.ports import check_free, port_setting
from deploy.local.postgres import LocalPostgres, cluster_dir, server_version, why_not_in_clone
from deploy.local.processes import OPERATOR, OPERATOR_DEFAULT_PORT, SERVICES, ServiceProcess
from shared.kafka_access import CARRIER, service_env, stored_credentials
from shared.settings import DEFAULT_HTTP_PORTS

LOG_DIR = REPO_ROOT / "var" / "log"
KAFKA_DIR = REPO_ROOT / "var" / "kafka" / "run"
CLUSTER_DIR = REPO_ROOT / "var" / "kafka" / "cluster"
TOKEN_FILE = REPO_ROOT / "var" / "operator-token"
API_TOKEN_FILE = REPO_ROOT / "var" / "api-token"
CLI_CALLER = "topup-cli:read+auto-renewal"

# Settings for a demo: the simulated carrier reports usage (its default is none) and
# provisioning's line sweeper runs often. The user's own values win.
DEMO = {
    CARRIER_SIMULATOR: {"CARRIER_USAGE_INTERVAL_S": "10"},
    "provisioning": {"LINE_SWEEP_INTERVAL_S": "5"},
}


def own_settings(name: str, env: dict[str, str]) -> dict[str, str]:
    """What `make run` sets for process `name` beyond the common settings."""
    return {key: env.get(key, value) for key, value in DEMO.get(name, {}).items()}


def broker_identity(name: str, passwords: dict[str, str]) -> dict[str, str]:
    """Who process `name` is on the broker: a service as itself, the carrier's simulator as
    the carrier (it publishes usage reports); Stripe's simulator never touches Kafka."""
    if name == STRIPE_SIMULATOR:
        return {}
    return service_env(CARRIER if name == CARRIER_SIMULATOR else name, passwords)


def generated_token(path: Path) -> str:
    """A local caller's token: generated once, kept readable by its owner only."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token


def operator_tokens(env: dict[str, str], path: Path = TOKEN_FILE) -> tuple[str, str | None]:
    """OPERATOR_TOKENS for the services, and the token to put in the dashboard's URL
    (None when the tokens are the user's own: we do not pick one of theirs to print)."""
    if given := env.get("OPERATOR_TOKENS"):
        return given, None
    token = generated_token(path)
    return f"{env.get('USER') or 'operator'}={token}", token


def api_tokens(env: dict[str, str], path: Path = API_TOKEN_FILE) -> str:
    """API_TOKENS for the services: the user's own, else the command line's (generated)."""
    if given := env.get("API_TOKENS"):
        return given
    return f"{CLI_CALLER}={generated_token(path)}"


def main() -> int:
    """Start everything, wait for Ctrl-C, stop everything; a user's error in one line."""
    try:
        return run(dict(os.environ))
    except StackError as error:
        print(f"make run: {error.summary}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nstopped.", flush=True)
        return 130


def run(env: dict[str, str]) -> int:
    db = env.get("DB", "sqlite").lower()
    if db not in ("sqlite", "postgres"):
        raise StackError(f"DB must be 'sqlite' or 'postgres', not {db[:20]!r}")
    brokers = kafka_brokers(env)
    ports = wanted_ports(env, db, brokers)
    # SIGTERM and a closed terminal's SIGHUP stop it as Ctrl-C does: in order, in full
    # (SIGINT too when started in the background, where it would be ignored).
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, _interrupt)
    started = time.monotonic()
    with ExitStack() as stack:
        stack.enter_context(only_run_in_this_clone())
        make_room(ports)
        os.environ[MARKER] = str(REPO_ROOT)  # inherited by all we start: leftovers.find
        # Each service, the carrier, the CLI (publisher) and the admin: a password each,
        # generated once into var/kafka-credentials/ (0600); users and ACLs made at start.
        passwords = stored_credentials()
        kafka: LocalKafka | LocalKafkaCluster
        if brokers == 1:
            kafka = LocalKafka(
                KAFKA_DIR, port=ports["KAFKA_PORT"], die_with_parent=True, passwords=passwords
            )
        else:
            kafka = LocalKafkaCluster(
                CLUSTER_DIR,
                brokers,
                [port for variable, port in ports.items() if variable.startswith("KAFKA_PORT")],
                die_with_parent=True,
                passwords=passwords,
            )
        # Said, not left to what the services see when they start: a broker not yet up
        # then would have the topics made with fewer replicas.
        replication = cluster_replication(brokers)
        shape = "" if brokers == 1 else f" ({brokers} brokers)"
        print(
            f"starting Kafka {kafka_version()}{shape} on {kafka.bootstrap_servers} ...", flush=True
        )
        stack.callback(kafka.stop)
        kafka.start()
        database_urls = {name: "" for name in SERVICES}
        if db == "postgres":
            pg = LocalPostgres(
                cluster_dir("run"), ports["PG_PORT"], fsync=True, die_with_parent=True
            )
            print(f"starting {server_version()} on port {pg.port} ...", flush=True)
            if reason := why_not_in_clone():
                print(f"  its data: {pg.data_dir} ({reason})", flush=True)
            stack.callback(pg.stop)
            pg.start()
            database_urls = {name: pg.create_database(name) for name in SERVICES}
        tokens, url_token = operator_tokens(env)
        callers = {"OPERATOR_TOKENS": tokens, "API_TOKENS": api_tokens(env)}
        outside = simulated(env)
        everyone = {
            name: ServiceProcess(
                name,
                ports[f"{name.upper()}_PORT"],
                env={
                    "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                    **replication,
                    "DATABASE_URL": database_urls.get(name, ""),  # simulators: SQLite
                    **({} if name in SIMULATORS else callers),
                    **own_settings(name, env),
                    **broker_identity(name, passwords),
                },
                log_path=LOG_DIR / f"{name}.log",
                die_with_parent=True,
            )
            for name in (*outside, *SERVICES)
        }
        world = outside_world_for({name: p.base_url for name, p in everyone.items()})
        for name, process in everyone.items():
            process.env |= world.env(name)
        services = list(everyone.values())
        for service in services:
            stack.callback(service.stop)
            service.start()
        for service in services:
            service.wait_healthy()
        operator = ServiceProcess(
            OPERATOR,
            ports["OPERATOR_PORT"],
            env={
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                **replication,
                **{f"{s.name.upper()}_URL": s.base_url for s in services if s.name in SERVICES},
                **callers,
                **service_env(OPERATOR, passwords),
            },
            log_path=LOG_DIR / f"{OPERATOR}.log",
            die_with_parent=True,
        )
        stack.callback(operator.stop)
        operator.start()
        operator.wait_healthy()
        everything = [*services, operator]
        _print_where_to_look(kafka, everything, db, time.monotonic() - started)
        _print_dashboard(operator, url_token)
        return _wait_for_stop(everything)
    return 0


def cluster_replication(brokers: int) -> dict[str, str]:
    """The replication settings of the services on a cluster: three replicas, two in sync."""
    if brokers == 1:
        return {}
    return {"KAFKA_REPLICATION_FACTOR": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2"}


def kafka_brokers(env: dict[str, str]) -> int:
    raw = env.get("KAFKA_BROKERS", "").strip() or "1"
    if raw not in ("1", "3"):
        raise StackError(
            f"KAFKA_BROKERS must be 1 (one broker) or 3 (a cluster of three), not {raw[:20]!r}"
        )
    return int(raw)


def wanted_ports(env: dict[str, str], db: str, brokers: int = 1) -> dict[str, int]:
    """Variable -> port of everything `make run` listens on (readable errors for bad values)."""
    kafka = port_setting(env, "KAFKA_PORT", 9092)
    defaults = {
        "KAFKA_PORT": kafka,
        **{f"KAFKA_PORT_{node}": kafka + node - 1 for node in range(2, brokers + 1)},
        **{
            f"{name.upper()}_PORT": DEFAULT_HTTP_PORTS[name]
            for name in (*SERVICES, *simulated(env))
        },
        "OPERATOR_PORT": OPERATOR_DEFAULT_PORT,
        **({"PG_PORT": 55432} if db == "postgres" else {}),
    }
    return {variable: port_setting(env, variable, port) for variable, port in defaults.items()}


def make_room(ports: dict[str, int]) -> None:
    """Stop what an earlier run of this clone left, then insist the ports are free."""
    nodes = [node / "server.properties" for node in CLUSTER_DIR.glob("node-*")]
    our_data = [KAFKA_DIR / "server.properties", *nodes, cluster_dir("run") / "pgdata"]
    left = leftovers.find(REPO_ROOT, our_data)
    if left:
        stopped = leftovers.stop(left)
        print(f"stopped what an earlier make run left running: {', '.join(stopped)}", flush=True)
    check_free(ports)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _print_where_to_look(
    kafka: LocalKafka | LocalKafkaCluster, services: list[ServiceProcess], db: str, seconds: float
) -> None:
    print(f"\nAll up in {seconds:.1f}s (databases: {db}).", flush=True)
    for node in kafka.nodes if isinstance(kafka, LocalKafkaCluster) else [kafka]:
        print(f"  {'Kafka':<17} {node.bootstrap_servers}   log: {node.log_path}")
    for service in services:
        print(f"  {service.name:<17} {service.base_url}/health   log: {service.log_path}")


def _print_dashboard(operator: ServiceProcess, token: str | None) -> None:
    if token is None:
        print(f"Dashboard  {operator.base_url}/   (sign in with a token of OPERATOR_TOKENS)")
    else:
        print(f"Dashboard  {operator.base_url}/#token={token}")
    print("Ctrl-C stops everything.", flush=True)


def _wait_for_stop(services: list[ServiceProcess]) -> int:
    """Block until Ctrl-C/SIGTERM/SIGHUP, or until a service dies (then stop the rest)."""
    try:
        while True:
            for service in services:
                if service.process is not None and service.process.poll() is not None:
                    print(f"{service.name} exited; see {service.log_path}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
