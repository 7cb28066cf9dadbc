"""How the HTTP APIs say no: one body shape per kind of refusal, declared in the OpenAPI
documents, and never more of the caller's input than a short, masked prefix.

- 422: `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`, FastAPI's own shape,
  for every invalid path, query or body value (ours too: `unprocessable`). The input is
  not echoed; a message quotes at most QUOTED_CHARS of it, masked.
- every other 4xx and 5xx: `{"detail": "..."}` (`Problem`).
"""

from __future__ import annotations

import unicodedata
from typing import Any, Final

import sqlalchemy.exc
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.limits import QUOTED_CHARS
from shared.logs import mask
from shared.outages import database_unreachable

MAX_ERRORS: Final = 10
MAX_MESSAGE_CHARS: Final = 300


class Problem(BaseModel):
    detail: str


class InvalidValue(BaseModel):
    loc: list[str | int]  # where: ["body", "email"], ["query", "limit"], ["path", "iccid"]
    msg: str  # what is wrong, in words; quotes at most a short masked prefix of the input
    type: str


class Invalid(BaseModel):
    detail: list[InvalidValue]


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


# What any operation behind a token may answer besides its own codes (shared/http_guard.py).
GUARDED: Final[dict[int | str, dict[str, Any]]] = {
    400: _problem("Malformed request (a Content-Length that is not a number)"),
    401: _problem("No valid bearer token (missing, malformed or unknown)"),
    403: _problem("The token's caller lacks the scope the operation needs"),
    413: _problem("The body is larger than the service accepts"),
    414: _problem("The path or the query string is longer than the service accepts"),
    422: {
        "model": Invalid,
        "description": "A value is invalid, or a query parameter unknown or given twice",
    },
}


# /health: public; 200 while it reaches what it needs (`ok`, or `degraded` with its
# problems), 503 when it does not (`unavailable`).
HEALTH_ANSWERS: Final[dict[int | str, dict[str, Any]]] = {
    200: {"description": "ok, or degraded (with the problems in words)"},
    503: {"description": "unavailable: a dependency cannot be reached"},
    **{code: GUARDED[code] for code in (400, 413, 414, 422)},
}

# The operator API's own: orders or the broker did not answer.
UPSTREAM: Final[dict[int | str, dict[str, Any]]] = {
    502: _problem("The orders service did not answer"),
    503: _problem("The Kafka broker did not answer"),
}


def not_found(description: str) -> dict[int | str, dict[str, Any]]:
    """An operation's 404, declared."""
    return {404: _problem(description)}


def printable(text: str) -> str:
    """`text` as it can be shown and stored: no control characters, no lone surrogates."""
    return "".join(
        "?" if unicodedata.category(ch) in {"Cc", "Cs"} and ch not in "\t" else ch for ch in text
    )


def shown(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A message for an answer or a log line: cut, masked, cut again, printable. Cut
    first (with room for a value cut in two) so a huge input costs no more than a small
    one; what is cut in two is still masked (shared/logs.py)."""
    masked = mask(text[: limit + 64])
    cut = masked if len(masked) <= limit else masked[: limit - 3] + "..."
    return printable(cut)


def quote(value: object) -> str:
    """A caller's value inside one of our messages: masked, at most QUOTED_CHARS."""
    return shown(repr(value), QUOTED_CHARS)


def _loc(part: object) -> str | int:
    return part if isinstance(part, int) else shown(str(part), 64)


def bounded_errors(errors: Any) -> list[dict[str, Any]]:
    return [
        {
            "loc": [_loc(part) for part in error.get("loc", ())],
            "msg": shown(str(error.get("msg", ""))),
            "type": shown(str(error.get("type", "")), 64),
        }
        for error in list(errors)[:MAX_ERRORS]
    ]


def known_query_only(request: Request) -> None:
    """A router dependency: a query parameter the operation does not take is refused
    (422), not silently ignored: a caller's typo would otherwise read as a default."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    declared = _query_names(dependant) if dependant is not None else set()
    for name in request.query_params:
        if name not in declared:
            raise unprocessable(("query", name), "not a parameter of this operation")


def _query_names(dependant: Any) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def unprocessable(loc: tuple[str | int, ...], msg: str, kind: str = "value_error") -> HTTPException:
    """A 422 of our own, shaped like FastAPI's."""
    return HTTPException(422, detail=[{"loc": list(loc), "msg": msg, "type": kind}])


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": bounded_errors(error.errors())}, status_code=422)


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail
    body = bounded_errors(detail) if isinstance(detail, list) else shown(str(detail))
    return JSONResponse({"detail": body}, status_code=error.status_code, headers=error.headers)


def ledger_unreachable(service: str, error: BaseException) -> JSONResponse:
    """A simulator's /health while its ledger (database) cannot be read: 503, in words."""
    problem = f"its ledger cannot be read ({type(error).__name__})"
    return JSONResponse(
        {"status": "unavailable", "service": service, "problems": [problem]}, status_code=503
    )


async def _database_unreachable(_request: Request, error: Exception) -> JSONResponse:
    """The database out of reach (restarting, say) is a 503 to try again, not a 500."""
    if not database_unreachable(error):
        raise error  # any other failure: Starlette's 500, logged
    return JSONResponse(
        {"detail": "the database cannot be reached right now; try again"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def answer_errors_safely(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sqlalchemy.exc.DBAPIError, _database_unreachable)
