"""Session-wide real infrastructure for the integration and end-to-end tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.credentials import ENVIRONMENT
from tests.infra import KafkaUnderTest, PostgresUnderTest, kafka_under_test, postgres_under_test

_used: dict[str, str] = {}

# Every app built here and every service process started reads its callers from these.
os.environ.update(ENVIRONMENT)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaUnderTest]:
    with kafka_under_test(tmp_path_factory.mktemp("kafka")) as broker:
        _used["Kafka"] = broker.description
        yield broker


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresUnderTest]:
    with postgres_under_test() as server:
        _used["PostgreSQL"] = server.description
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _used:
        terminalreporter.write_line("infrastructure used: none (unit tests only)")
        return
    for name, description in sorted(_used.items()):
        terminalreporter.write_line(f"infrastructure used: {name}: {description}")


def pytest_report_header() -> str:
    from tests.infra import describe_choice

    return f"infrastructure: {describe_choice()}"
