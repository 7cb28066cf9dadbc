"""What counts as the database out of reach (shared/outages.py): never a message's fault,
so never a dead letter; and what does not."""

from __future__ import annotations

import errno
import socket

import asyncpg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from shared.http_errors import answer_errors_safely
from shared.outages import database_unreachable

ERRORS = asyncpg.exceptions


def wrapped(error: BaseException, *, invalidated: bool = False) -> DBAPIError:
    """As SQLAlchemy raises a driver's error."""
    return DBAPIError("SELECT 1", {}, error, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(wrapped(ConnectionRefusedError(111, "refused")), id="refused"),
        pytest.param(wrapped(ConnectionResetError(104, "reset")), id="reset"),
        pytest.param(wrapped(socket.gaierror(-2, "Name or service not known")), id="no-such-host"),
        pytest.param(wrapped(OSError(errno.EHOSTUNREACH, "No route to host")), id="no-route"),
        pytest.param(wrapped(ERRORS.CannotConnectNowError("starting up")), id="starting-up"),
        pytest.param(wrapped(ERRORS.AdminShutdownError("terminating")), id="fast-shutdown"),
        pytest.param(wrapped(ERRORS.CrashShutdownError("crash")), id="immediate-shutdown"),
        pytest.param(wrapped(ERRORS.TooManyConnectionsError("too many")), id="too-many"),
        pytest.param(wrapped(ERRORS.ConnectionDoesNotExistError("closed")), id="closed-mid-query"),
        pytest.param(wrapped(ERRORS.InterfaceError("connection is closed")), id="closed"),
        pytest.param(wrapped(Exception("gone"), invalidated=True), id="invalidated"),
    ],
)
def test_the_database_out_of_reach_is_told_apart(error: BaseException) -> None:
    assert database_unreachable(error)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(wrapped(ERRORS.UniqueViolationError("dup")), id="unique"),
        pytest.param(IntegrityError("x", {}, Exception("23505")), id="integrity"),
        pytest.param(DataError("x", {}, ERRORS.NumericValueOutOfRangeError("big")), id="data"),
        pytest.param(wrapped(ERRORS.DeadlockDetectedError("deadlock")), id="deadlock"),
        pytest.param(TimeoutError("slow"), id="timeout"),
        pytest.param(ValueError("bad"), id="value"),
        # Not the database's: a refused connection to the carrier, or raised near one.
    ],
)
def test_what_is_not_an_outage_is_not_taken_for_one(error: BaseException) -> None:
    assert not database_unreachable(error)


def test_a_refused_connection_that_is_not_the_databases_is_no_outage() -> None:
    carrier = RuntimeError("carrier unavailable")
    carrier.__cause__ = ConnectionRefusedError(111, "refused")
    assert not database_unreachable(carrier)
    while_handling = KeyError("field")
    while_handling.__context__ = ConnectionRefusedError(111, "refused")
    assert not database_unreachable(while_handling)
    assert not database_unreachable(ConnectionRefusedError(111, "refused"))


def test_an_outage_found_behind_other_errors_counts() -> None:
    error = RuntimeError("the step failed")
    error.__cause__ = wrapped(ERRORS.AdminShutdownError("terminating"))
    assert database_unreachable(error)


def test_an_api_call_meeting_the_database_out_of_reach_gets_a_503_to_try_again() -> None:
    app = FastAPI()
    answer_errors_safely(app)

    @app.get("/restarting")
    async def restarting() -> None:
        raise wrapped(ERRORS.CannotConnectNowError("the database system is starting up"))

    @app.get("/broken")
    async def broken() -> None:
        raise wrapped(ERRORS.UniqueViolationError("dup"))

    client = TestClient(app, raise_server_exceptions=False)
    answered = client.get("/restarting")
    assert (answered.status_code, answered.headers["retry-after"]) == (503, "1")
    assert "database cannot be reached" in answered.json()["detail"]
    assert client.get("/broken").status_code == 500  # not an outage: not dressed as one
