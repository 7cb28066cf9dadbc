import pytest

from shared.settings import REPO_ROOT, ServiceSettings


def test_defaults_give_each_service_its_port_and_sqlite_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("HTTP_PORT", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(var, raising=False)
    settings = ServiceSettings(service_name="payments")
    assert settings.port == 8002
    assert settings.resolved_database_url == (
        f"sqlite+aiosqlite:///{REPO_ROOT}/var/data/payments.db"
    )
    assert settings.kafka_bootstrap_servers == "localhost:9092"


def test_environment_variables_override_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "9100")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@h/orders")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:29092")
    settings = ServiceSettings(service_name="orders")
    assert settings.port == 9100
    assert settings.resolved_database_url == "postgresql+asyncpg://u@h/orders"
    assert settings.kafka_bootstrap_servers == "broker:29092"
