"""Whether a failure is the database being out of reach (restarting, shut down, refusing
connections, its host unknown for now) rather than anything about the message in hand:
such a failure is never a reason to dead-letter a message, which is given back to come
again once the database is back (shared/dead_letters.py), however long that takes.

Only a database error counts (SQLAlchemy's, or the asyncpg driver's), judged by what it
says and what caused it: a refused, reset or unroutable connection or an unresolvable
host, a connection SQLAlchemy found invalid, or one of PostgreSQL's SQLSTATE classes 08
(connection exception), 57P (operator intervention: an administrator's or a crash's
shutdown, "the database system is starting up") and 53 (insufficient resources: too many
connections, out of disk). A refused connection to anything else (the carrier, say) is
not the database's, and the message goes its usual way.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import Final

import asyncpg
import sqlalchemy.exc

OUTAGE_SQLSTATES: Final = ("08", "57P", "53")
UNREACHABLE_ERRNOS: Final = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
)
DATABASE_ERRORS: Final = (
    sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.DisconnectionError,
    asyncpg.exceptions.PostgresError,
    asyncpg.exceptions.InterfaceError,
)


def database_unreachable(error: BaseException) -> bool:
    """Whether `error`, or a database error that caused it, says the database cannot be
    reached now."""
    return any(
        isinstance(found, DATABASE_ERRORS) and any(map(_is_outage, _chain(found)))
        for found in _chain(error)
    )


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, what caused it and what it was raised while handling, and a SQLAlchemy
    error's driver error (`orig`), each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__, getattr(current, "orig", None)]


def _is_outage(error: BaseException) -> bool:
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sqlalchemy.exc.DisconnectionError):
        return True
    if isinstance(error, ConnectionError | socket.gaierror):
        return True  # refused, reset; or the host's name does not resolve (yet)
    if isinstance(error, OSError) and error.errno in UNREACHABLE_ERRNOS:
        return True
    if isinstance(error, asyncpg.exceptions.ConnectionDoesNotExistError):
        return True  # closed under a query
    if isinstance(error, asyncpg.exceptions.InterfaceError) and "closed" in str(error):
        return True  # "connection is closed": the server went away between two queries
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(OUTAGE_SQLSTATES)
