"""The throw-away PostgreSQL cluster used when no DATABASE_URL or Docker is there."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from deploy.local.postgres import scratch_postgres
from shared.db import create_engine

pytestmark = pytest.mark.integration


async def test_a_local_cluster_starts_serves_sql_and_stops() -> None:
    with scratch_postgres("test") as pg:
        url = pg.create_database("smoke")
        assert pg.create_database("smoke") == url  # creating twice is harmless
        engine = create_engine(url)
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT current_database()")) == "smoke"
        await engine.dispose()
        pid = pg.pid
        data_dir = pg.data_dir
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not data_dir.exists()
