import pytest

from services.payments.settings import PaymentsSettings
from shared.settings import REPO_ROOT, ServiceSettings, specialise


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


def test_common_settings_become_a_services_own_keeping_what_they_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SETTLE_INTERVAL_S", "2")
    monkeypatch.setenv("HTTP_PORT", "9200")
    plain = ServiceSettings(service_name="payments", database_url="sqlite+aiosqlite:///x.db")
    converted = specialise(plain, PaymentsSettings)
    assert converted.database_url == "sqlite+aiosqlite:///x.db"
    assert converted.settle_interval_s == 2.0  # the service's own, from the environment
    assert converted.port == 9200  # not reset to a default by the conversion
    assert specialise(converted, PaymentsSettings) is converted
    assert specialise(None, PaymentsSettings).service_name == "payments"
