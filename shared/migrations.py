"""Alembic migrations, run by each service at start-up on its own database.

Every service keeps its revisions in `services/<name>/migrations/versions/` and a
two-line `env.py` that calls `run_env(metadata)`. `migrate()` upgrades to head on
the service's engine; on PostgreSQL an advisory lock makes two instances starting
together take turns instead of racing to create the same tables.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config(migrations_dir: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    return config


async def migrate(engine: AsyncEngine, migrations_dir: Path) -> None:
    """Upgrade the database to the newest revision (a no-op when it is there)."""
    config = alembic_config(migrations_dir)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            lock_id = zlib.crc32(str(migrations_dir).encode())
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        await conn.run_sync(_upgrade, config)


def _upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def run_env(metadata: MetaData) -> None:
    """The body of every service's env.py: online migrations on the given connection."""
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through shared.migrations.migrate()")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place: batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
