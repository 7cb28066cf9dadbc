"""Who may call the HTTP APIs: named callers, each with a bearer token and scopes.

Two environment variables, read by every service at start-up (a malformed value stops it):

- `API_TOKENS="storefront:read+auto-renewal=token-s,care:read=token-c"`: internal
  systems, each `name:scope+scope=token`;
- `OPERATOR_TOKENS="alice=token-a,bob=token-b"`: operators, each `name=token`, with the
  scopes `read` and `operate`.

A request to anything but the public paths (health, metrics, the API documents, the
dashboard's page) carries `Authorization: Bearer <token>`. It is authenticated before its
body is read (shared/http_guard.py): 401, saying what was wrong and nothing about what
the path names, when the token is missing or unknown. Each operation then needs one
scope (`Reader`, `Renewer`, `Operator` below): 403 when the caller lacks it. The caller's
name is what the audit log records. No tokens configured means nobody gets in.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

UNAUTHORISED: Final = Counter(
    "topup_http_unauthorised_total",
    "HTTP requests refused for want of a valid token (401) or of a scope (403)",
    ["reason"],
)


class Scope(StrEnum):
    READ = "read"  # orders, lines (balance, usage, alerts, auto-renewal masked), catalog
    AUTO_RENEWAL = "auto-renewal"  # turn a line's auto-renewal on, change it, turn it off
    OPERATE = "operate"  # the operator API: topics, sagas, dead letters and their replay


OPERATOR_SCOPES: Final = frozenset({Scope.READ, Scope.OPERATE})
MAX_TOKEN_CHARS: Final = 512


class AccessSettings(BaseSettings):
    """Read from the environment variables API_TOKENS and OPERATOR_TOKENS."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    api_tokens: SecretStr = SecretStr("")
    operator_tokens: SecretStr = SecretStr("")


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[Scope]


@dataclass(frozen=True)
class Callers:
    """Every caller with its token; looked up in constant time over all of them."""

    known: tuple[tuple[Caller, bytes], ...]

    @classmethod
    def parse(cls, api_tokens: str = "", operator_tokens: str = "") -> Callers:
        """A malformed entry is an error naming the entry (never its token)."""
        entries = [
            *(_api_entry(entry) for entry in _entries(api_tokens)),
            *(_operator_entry(entry) for entry in _entries(operator_tokens)),
        ]
        names = [caller.name for caller, _ in entries]
        if twice := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"API_TOKENS/OPERATOR_TOKENS name {', '.join(twice)} twice")
        return cls(tuple(entries))

    @classmethod
    def from_env(cls) -> Callers:
        settings = AccessSettings()
        return cls.parse(
            settings.api_tokens.get_secret_value(), settings.operator_tokens.get_secret_value()
        )

    def find(self, token: str) -> Caller | None:
        """The caller holding `token`, compared against every token in constant time,
        so neither the answer's timing nor its position tells how close a guess was."""
        found = None
        given = token.encode(errors="replace")
        for caller, known in self.known:
            if hmac.compare_digest(given, known):
                found = caller
        return found


def _entries(text: str) -> list[str]:
    return [entry.strip() for entry in text.split(",") if entry.strip()]


def _api_entry(entry: str) -> tuple[Caller, bytes]:
    who, sep, token = (part.strip() for part in entry.partition("="))
    name, has_scopes, scope_list = (part.strip() for part in who.partition(":"))
    if not sep or not name or not token or not has_scopes:
        raise ValueError(f"API_TOKENS entry {name or '?'!r} is not name:scope+scope=token")
    scopes = [scope.strip() for scope in scope_list.split("+") if scope.strip()]
    known = {scope.value for scope in Scope}
    if not scopes or any(scope not in known for scope in scopes):
        raise ValueError(
            f"API_TOKENS entry {name!r}: scopes must be some of {', '.join(sorted(known))}"
        )
    return Caller(name, frozenset(Scope(scope) for scope in scopes)), token.encode()


def _operator_entry(entry: str) -> tuple[Caller, bytes]:
    name, sep, token = (part.strip() for part in entry.partition("="))
    if not sep or not name or not token:
        raise ValueError(f"OPERATOR_TOKENS entry {name or '?'!r} is not name=token")
    return Caller(name, OPERATOR_SCOPES), token.encode()


class Refusal(Exception):
    """Why a request is not answered: a 401 (who are you?) or a 403 (not yours to do)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail

    def http(self) -> HTTPException:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return HTTPException(self.status, detail=self.detail, headers=headers)


def refused(status: int, reason: str, detail: str) -> Refusal:
    UNAUTHORISED.labels(reason).inc()
    log.warning("request refused (%s): %s", reason, detail)
    return Refusal(status, reason, detail)


def authenticate(authorization: str | None, callers: Callers) -> Caller:
    """The caller whose bearer token `authorization` carries; else a 401 Refusal."""
    if not authorization:
        raise refused(401, "missing", "missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        raise refused(401, "malformed", "the Authorization header must be 'Bearer <token>'")
    if not callers.known:
        raise refused(401, "unconfigured", "no tokens are configured (API_TOKENS, OPERATOR_TOKENS)")
    caller = callers.find(token)
    if caller is None:
        raise refused(401, "unknown", "unknown token: it belongs to no caller")
    return caller


def callers_of(app: Any) -> Callers:
    """The app's callers: set on `app.state.callers`, else read once from the environment."""
    callers = getattr(app.state, "callers", None)
    if not isinstance(callers, Callers):
        callers = Callers.from_env()
        app.state.callers = callers
    return callers


BEARER: Final = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A caller's token (API_TOKENS for internal systems, OPERATOR_TOKENS for "
    "operators); each operation says which scope it needs.",
)


def _requires(scope: Scope) -> Any:
    async def caller(
        request: Request,
        # Declares the scheme and, as OpenAPI 3.1 allows, the scope as its role name.
        _documented: HTTPAuthorizationCredentials | None = Security(  # noqa: B008
            BEARER, scopes=[scope.value]
        ),
    ) -> str:
        known = getattr(request.state, "caller", None)
        try:
            if not isinstance(known, Caller):  # no guard in front (a bare test app)
                known = authenticate(request.headers.get("authorization"), callers_of(request.app))
            if scope not in known.scopes:
                raise refused(
                    403,
                    "scope",
                    f"{known.name} may not do this: it needs the scope {scope.value!r}",
                )
        except Refusal as refusal:
            raise refusal.http() from None
        return known.name

    caller.__doc__ = f"Needs a bearer token with the scope {scope.value!r}."
    return Depends(caller)


Reader = Annotated[str, _requires(Scope.READ)]
Renewer = Annotated[str, _requires(Scope.AUTO_RENEWAL)]
Operator = Annotated[str, _requires(Scope.OPERATE)]
"""An endpoint parameter of one of these types needs a token with that scope; its value
is the caller's name."""
