"""`make run`: Kafka, optionally PostgreSQL, the three services and the operator
service (the live dashboard), in the foreground.

Ctrl-C (or SIGTERM) stops the services, then the broker and the database, and
leaves no process behind. Settings (environment variables):

  DB=sqlite|postgres   where the services keep their data (default sqlite files
                       under var/data/; postgres starts a local cluster in var/pg/run)
  KAFKA_PORT=9092      the broker's port;  PG_PORT=55432  the cluster's port
  ORDERS_PORT=8001, PAYMENTS_PORT=8002, PROVISIONING_PORT=8003, OPERATOR_PORT=8000
  OPERATOR_TOKENS=name=token,...   who may use the dashboard and the operator API; unset:
                       one token for $USER, generated once into var/operator-token (0600)
  CARRIER_USAGE_INTERVAL_S=10, LINE_SWEEP_INTERVAL_S=5   provisioning's simulated carrier
                       reports its lines' usage every 10 s and lines are checked for alerts,
                       expiry and renewal retries every 5 s, so usage alerts and an auto-renewal
                       show within minutes (README); set either to change it
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from deploy.local.kafka import REPO_ROOT, LocalKafka, kafka_version
from deploy.local.postgres import PG_ROOT, LocalPostgres, server_version
from deploy.local.processes import OPERATOR, OPERATOR_DEFAULT_PORT, SERVICES, ServiceProcess
from shared.settings import DEFAULT_HTTP_PORTS

LOG_DIR = REPO_ROOT / "var" / "log"
TOKEN_FILE = REPO_ROOT / "var" / "operator-token"

# Provisioning's settings for a demo: the simulated carrier reports usage (the services'
# default is none) and the line sweeper runs often. The user's own values win.
PROVISIONING_DEMO = {"CARRIER_USAGE_INTERVAL_S": "10", "LINE_SWEEP_INTERVAL_S": "5"}


def own_settings(name: str, env: dict[str, str]) -> dict[str, str]:
    """What `make run` sets for service `name` beyond the common settings."""
    if name != "provisioning":
        return {}
    return {key: env.get(key, value) for key, value in PROVISIONING_DEMO.items()}


def operator_token(path: Path = TOKEN_FILE) -> str:
    """The local operator's token: generated once, kept readable by its owner only."""
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
    token = operator_token(path)
    return f"{env.get('USER') or 'operator'}={token}", token


def main() -> int:
    db = os.environ.get("DB", "sqlite").lower()
    if db not in ("sqlite", "postgres"):
        print(f"DB must be 'sqlite' or 'postgres', not {db!r}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with ExitStack() as stack:
        kafka = LocalKafka(
            REPO_ROOT / "var/kafka/run", port=int(os.environ.get("KAFKA_PORT", 9092))
        )
        print(f"starting Kafka {kafka_version()} on {kafka.bootstrap_servers} ...", flush=True)
        kafka.start()
        stack.callback(kafka.stop)
        database_urls = {name: "" for name in SERVICES}
        if db == "postgres":
            pg = LocalPostgres(PG_ROOT / "run", int(os.environ.get("PG_PORT", 55432)), fsync=True)
            print(f"starting {server_version()} on port {pg.port} ...", flush=True)
            pg.start()
            stack.callback(pg.stop)
            database_urls = {name: pg.create_database(name) for name in SERVICES}
        tokens, url_token = operator_tokens(dict(os.environ))
        services = [
            ServiceProcess(
                name,
                int(os.environ.get(f"{name.upper()}_PORT", DEFAULT_HTTP_PORTS[name])),
                env={
                    "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                    "DATABASE_URL": database_urls[name],
                    "OPERATOR_TOKENS": tokens,  # orders answers operators (GET /sagas)
                    **own_settings(name, dict(os.environ)),
                },
                log_path=LOG_DIR / f"{name}.log",
            )
            for name in SERVICES
        ]
        for service in services:
            service.start()
            stack.callback(service.stop)
        for service in services:
            service.wait_healthy()
        operator = ServiceProcess(
            OPERATOR,
            int(os.environ.get("OPERATOR_PORT", OPERATOR_DEFAULT_PORT)),
            env={
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "ORDERS_URL": services[SERVICES.index("orders")].base_url,
                "OPERATOR_TOKENS": tokens,
            },
            log_path=LOG_DIR / f"{OPERATOR}.log",
        )
        operator.start()
        stack.callback(operator.stop)
        operator.wait_healthy()
        everything = [*services, operator]
        _print_where_to_look(kafka, everything, db, time.monotonic() - started)
        _print_dashboard(operator, url_token)
        return _wait_for_stop(everything)
    return 0


def _print_where_to_look(
    kafka: LocalKafka, services: list[ServiceProcess], db: str, seconds: float
) -> None:
    print(f"\nAll up in {seconds:.1f}s (databases: {db}).", flush=True)
    print(f"  Kafka         {kafka.bootstrap_servers}   log: {kafka.log_path}")
    for service in services:
        print(f"  {service.name:<13} {service.base_url}/health   log: {service.log_path}")


def _print_dashboard(operator: ServiceProcess, token: str | None) -> None:
    if token is None:
        print(f"Dashboard  {operator.base_url}/   (sign in with a token of OPERATOR_TOKENS)")
    else:
        print(f"Dashboard  {operator.base_url}/#token={token}")
    print("Ctrl-C stops everything.", flush=True)


def _wait_for_stop(services: list[ServiceProcess]) -> int:
    """Block until Ctrl-C/SIGTERM, or until a service dies (then stop the rest)."""
    stop = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stop:
        for service in services:
            if service.process is not None and service.process.poll() is not None:
                print(f"{service.name} exited; see {service.log_path}", file=sys.stderr)
                return 1
        time.sleep(0.5)
    print("\nstopping ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
