"""Database plumbing: async engines for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Insert, MetaData, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

POOL_SIZE: Final = 12


def create_engine(url: str) -> AsyncEngine:
    """An engine for `url`; SQLite files get their folder, WAL and a busy timeout. Its
    errors never quote the statement's values (hide_parameters): they can be a token."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # No pre-ping: it cost a round trip per transaction. A connection that died
        # (a database restart) fails its transaction once, SQLAlchemy discards the
        # pool's stale connections, and the message is retried (shared/dead_letters.py).
        # Enough connections kept open for every consumer worker (shared/kafka.py) plus
        # the relay and a background loop: an overflow connection is closed on return,
        # so a pool smaller than that reconnects, and re-prepares, all the time.
        return create_async_engine(url, pool_size=POOL_SIZE, max_overflow=4, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling starts a transaction only at the first
    # write, so a SAVEPOINT (insert_once) would open, and its RELEASE commit, the
    # whole transaction. Turn it off and BEGIN ourselves (SQLAlchemy's pysqlite recipe).
    dbapi_connection.isolation_level = None
    # WAL lets the HTTP readers run while the consumer writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE: take the write lock up front (waiting up to the busy timeout), so two
    # transactions never both read and then fail to upgrade to writing.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def sessions_for(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_schema(engine: AsyncEngine, metadata: MetaData) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def insert_once(session: AsyncSession, statement: Insert) -> bool:
    """Run an INSERT guarded by a unique key; False when the row already exists.

    The unique key, not a prior SELECT, decides: two concurrent deliveries of the
    same message cannot both pass (PostgreSQL makes the second wait for the first
    to commit, then skips it). `INSERT ... ON CONFLICT DO NOTHING RETURNING` says
    so in one round trip, where a savepoint around a plain INSERT took three.
    """
    table = statement.table
    # The statement's own values, as given to `.values()` (compiling it to read them
    # back would cost more than the INSERT).
    values = {str(getattr(c, "key", c)): v.value for c, v in (statement._values or {}).items()}
    guarded = (
        insert_ignoring_conflicts(session, table)
        .values(**values)
        .returning(*table.primary_key.columns)  # type: ignore[attr-defined]
    )
    return (await session.execute(guarded)).first() is not None


async def insert_new(session: AsyncSession, table: Any, rows: list[dict[str, Any]]) -> set[Any]:
    """`insert_once` for many rows in one statement (a batch's): the primary keys of the
    rows it inserted; a row whose key exists is left as it is. `table`'s primary key is
    one column."""
    if not rows:
        return set()
    columns = set(rows[0])
    if any(set(row) != columns for row in rows):
        # One multi-row INSERT takes its columns from the first row: another row's own
        # would be dropped without a word.
        raise ValueError(f"rows for {table.name} with different columns")
    (key,) = table.primary_key.columns
    statement = insert_ignoring_conflicts(session, table).values(rows).returning(key)
    return set((await session.execute(statement)).scalars())


def insert_ignoring_conflicts(session: AsyncSession, table: Any) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` into `table`, in the session's dialect."""
    dialect = session.get_bind().dialect.name
    return _INSERT_IGNORING_CONFLICTS[dialect](table).on_conflict_do_nothing()


_INSERT_IGNORING_CONFLICTS: Final[dict[str, Any]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every datetime we store is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
