"""The throw-away PostgreSQL cluster used when no DATABASE_URL or Docker is there."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from sqlalchemy import text

from deploy.local.kafka import REPO_ROOT
from deploy.local.postgres import LocalPostgres
from shared.db import create_engine

pytestmark = pytest.mark.integration


async def test_a_local_cluster_starts_serves_sql_and_stops() -> None:
    data_dir = REPO_ROOT / "var" / "pg" / f"test-{uuid.uuid4().hex[:8]}"
    try:
        with LocalPostgres(data_dir) as pg:
            url = pg.create_database("smoke")
            assert pg.create_database("smoke") == url  # creating twice is harmless
            engine = create_engine(url)
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT current_database()")) == "smoke"
            await engine.dispose()
            pid = pg.pid
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
