"""Whether a failure is the database being out of reach (restarting, shut down, refusing
connections) rather than anything about the message in hand: such a failure is never a
reason to dead-letter a message, which is given back to come again once the database is
back (shared/dead_letters.py), however long that takes.

Judged by what the failure is, through SQLAlchemy's wrapping and asyncpg's: a refused or
reset connection (ConnectionError), a connection SQLAlchemy found invalid, or one of
PostgreSQL's SQLSTATE classes 08 (connection exception), 57P (operator intervention: an
administrator's or a crash's shutdown, "the database system is starting up") and 53
(insufficient resources: too many connections, out of disk).
"""

from __future__ import annotations

from typing import Final

import asyncpg
import sqlalchemy.exc

OUTAGE_SQLSTATES: Final = ("08", "57P", "53")


def database_unreachable(error: BaseException) -> bool:
    """Whether `error`, or what caused it, says the database cannot be reached now."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if _is_outage(current):
            return True
        pending += [current.__cause__, current.__context__, getattr(current, "orig", None)]
    return False


def _is_outage(error: BaseException) -> bool:
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sqlalchemy.exc.DisconnectionError):
        return True
    if isinstance(error, ConnectionError | asyncpg.exceptions.ConnectionDoesNotExistError):
        return True  # refused, reset, or closed under a query
    if isinstance(error, asyncpg.exceptions.InterfaceError) and "closed" in str(error):
        return True  # "connection is closed": the server went away between two queries
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(OUTAGE_SQLSTATES)
