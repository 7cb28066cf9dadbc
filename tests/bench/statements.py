"""Statements and transactions per saga, per database, from PostgreSQL itself: the bench's
server loads pg_stat_statements; `read` before and after a phase, `per_saga` the
difference divided by the sagas that ended in between. The same counts PostgreSQL's
statement log would give, without the log's own cost on the measured run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

SERVER_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",  # statements inside functions too
    "pg_stat_statements.max": "5000",
}
TOP = 8  # statements shown per database

_STATEMENTS = """
SELECT d.datname AS database, s.queryid AS id, left(s.query, 160) AS query, s.calls AS calls
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname LIKE 'bench_%' AND s.toplevel
"""
_TRANSACTIONS = """
SELECT datname AS database, xact_commit + xact_rollback AS transactions
FROM pg_stat_database WHERE datname LIKE 'bench_%'
"""


@dataclass
class Reading:
    statements: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    transactions: dict[str, int] = field(default_factory=dict)


async def read(dsn: str) -> Reading:
    """Every bench database's statements (by query id) and transactions so far."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        reading = Reading()
        for row in await connection.fetch(_STATEMENTS):
            key = (row["database"], row["id"])
            _, calls = reading.statements.get(key, ("", 0))
            reading.statements[key] = (row["query"], calls + row["calls"])
        # The statistics collector publishes a backend's counts when it goes idle: a fresh
        # snapshot, not the one cached for this transaction.
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        for row in await connection.fetch(_TRANSACTIONS):
            reading.transactions[row["database"]] = row["transactions"]
        return reading
    finally:
        await connection.close()


def per_saga(
    before: Reading, after: Reading, sagas: int, names: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Per service (`names`: database -> service): statements and transactions per saga,
    and the statements run most, each with its calls per saga."""
    if sagas <= 0:
        return {}
    shown: dict[str, dict[str, Any]] = {}
    for database, name in sorted(names.items(), key=lambda item: item[1]):
        calls = [
            (n - before.statements.get((db, qid), ("", 0))[1], query)
            for (db, qid), (query, n) in after.statements.items()
            if db == database
        ]
        transactions = after.transactions.get(database, 0) - before.transactions.get(database, 0)
        top = sorted((c for c in calls if c[0] > 0), reverse=True)[:TOP]
        shown[name] = {
            "statements_per_saga": round(sum(n for n, _ in calls) / sagas, 2),
            "transactions_per_saga": round(transactions / sagas, 2),
            "top": [
                {"query": " ".join(query.split()), "per_saga": round(n / sagas, 2)}
                for n, query in top
            ],
        }
    return shown
