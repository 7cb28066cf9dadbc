"""Each service's migrations build exactly the tables its code declares, on PostgreSQL
and on SQLite, and running them twice is harmless."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData

from shared.db import create_engine
from shared.migrations import migrate
from shared.settings import REPO_ROOT
from tests.infra import PostgresUnderTest

pytestmark = pytest.mark.integration

SERVICES_WITH_MIGRATIONS = sorted(
    p.parent.parent.name for p in (REPO_ROOT / "services").glob("*/migrations/env.py")
)


def differences(connection: Connection, metadata: MetaData) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("service", SERVICES_WITH_MIGRATIONS)
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_migrations_match_the_declared_tables(
    service: str, backend: str, postgres: PostgresUnderTest, tmp_path: Path
) -> None:
    metadata: MetaData = importlib.import_module(f"services.{service}.db").metadata
    url = (
        await postgres.create_database(service)
        if backend == "postgresql"
        else f"sqlite+aiosqlite:///{tmp_path / service}.db"
    )
    engine = create_engine(url)
    migrations = REPO_ROOT / "services" / service / "migrations"
    try:
        await migrate(engine, migrations)
        await migrate(engine, migrations)
        async with engine.connect() as conn:
            diff = await conn.run_sync(differences, metadata)
    finally:
        await engine.dispose()
    assert diff == []
