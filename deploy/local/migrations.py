"""Write a new Alembic revision for a service from the difference between its
tables (services/<name>/db.py) and its migrations so far.

    python -m deploy.local.migrations orders -m "add a column"     (make migration)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import Connection

from deploy.local.kafka import REPO_ROOT
from shared.db import create_engine
from shared.migrations import alembic_config, migrate


async def new_revision(service: str, message: str) -> None:
    importlib.import_module(f"services.{service}.db")  # the tables to compare with
    migrations = REPO_ROOT / "services" / service / "migrations"
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(scratch) / 'scratch.db'}")
        await migrate(engine, migrations)
        config = alembic_config(migrations)

        def autogenerate(connection: Connection) -> None:
            config.attributes["connection"] = connection
            command.revision(config, message=message, autogenerate=True)

        async with engine.begin() as conn:
            await conn.run_sync(autogenerate)
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=["orders", "payments", "provisioning"])
    parser.add_argument("-m", "--message", required=True)
    args = parser.parse_args()
    asyncio.run(new_revision(args.service, args.message))


if __name__ == "__main__":
    main()
