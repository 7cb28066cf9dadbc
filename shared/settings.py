"""Service configuration, read from environment variables (12-factor)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_HTTP_PORTS = {
    "orders": 8001,
    "payments": 8002,
    "provisioning": 8003,
    # The outside world's simulators (deploy/local/outside_world.py).
    "stripe_simulator": 8010,
    "carrier_simulator": 8011,
}


class ServiceSettings(BaseSettings):
    """What every service process needs; each field but `service_name` is an
    environment variable of the same name in upper case.

    `DATABASE_URL` is per process: every service owns its own database. When it
    is unset the service uses an embedded SQLite file under `var/data/`.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str
    kafka_bootstrap_servers: str = "localhost:9092"
    # Who this process is on the broker (shared/kafka_access.py); no username: plaintext.
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_security_protocol: str = "SASL_PLAINTEXT"
    database_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(default=None, ge=0, le=65535)
    log_level: str = "INFO"
    # /health says degraded when a partition is held at one offset this long (shared/progress.py).
    partition_stuck_after_s: float = Field(default=30.0, gt=0)
    # The most records a consumer handles in one fetch, across its partitions
    # (shared/batches.py); 1 handles every message in its own transaction. At most 1000:
    # a batch's new orders are one INSERT, within PostgreSQL's 32,767 parameters.
    consumer_batch_max_records: int = Field(default=500, ge=1, le=1000)
    # Partitions of each topic a service creates (an existing topic keeps its own: more
    # partitions would move a line's key to another one, out of order). The unit of
    # parallelism between a consumer group's members, and within one (shared/batches.py).
    kafka_partitions: int = Field(default=3, ge=1, le=64)
    # Replicas of each partition of the topics a service creates, and how many must have a
    # write before it is acknowledged (shared/topic_layout.py). Unset: 3 and 2 on a
    # cluster of three brokers or more, what it has below that (1 and 1 on one broker).
    kafka_replication_factor: int | None = Field(default=None, ge=1, le=16)
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1, le=16)
    # Tracing (shared/tracing.py, docs/tracing.md): off unless TRACING_ENABLED=true; then
    # spans go to OTLP/HTTP when the standard OTEL_EXPORTER_OTLP_ENDPOINT is set, else
    # as JSON lines to TRACING_FILE, else to stdout.
    tracing_enabled: bool = False
    tracing_file: str = ""
    otel_exporter_otlp_endpoint: str = ""

    @property
    def port(self) -> int:
        if self.http_port is not None:
            return self.http_port
        return DEFAULT_HTTP_PORTS.get(self.service_name, 8000)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        path = REPO_ROOT / "var" / "data" / f"{self.service_name}.db"
        return f"sqlite+aiosqlite:///{path}"


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def specialise(settings: ServiceSettings | None, kind: type[SettingsT]) -> SettingsT:
    """A service's own settings class from the common one (tests build the common one):
    the given values win, the service's extra fields come from the environment."""
    if isinstance(settings, kind):
        return settings
    given = settings.model_dump(exclude_unset=True) if settings is not None else {}
    return kind(**given)
