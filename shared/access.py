"""Operator access: bearer tokens named after the operators who hold them.

`OPERATOR_TOKENS="alice=token-a,bob=token-b"` gives each operator a token of their
own; a request to a protected endpoint carries `Authorization: Bearer <token>` and
is answered as that operator (who the audit log names), or refused with 401 and a
detail saying what was wrong. No tokens configured means nobody gets in.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, HTTPException, Request
from prometheus_client import Counter
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

UNAUTHORISED: Final = Counter(
    "topup_operator_unauthorised_total",
    "Requests to an operator endpoint refused for want of a valid token",
    ["reason"],
)


class AccessSettings(BaseSettings):
    """Read from the environment variable OPERATOR_TOKENS."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    operator_tokens: SecretStr = SecretStr("")


@dataclass(frozen=True)
class OperatorTokens:
    """Which operator each token belongs to."""

    by_operator: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> OperatorTokens:
        """`name=token,name2=token2`; a malformed entry is an error, not a silent skip."""
        pairs: list[tuple[str, str]] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            name, sep, token = (s.strip() for s in entry.partition("="))
            if not sep or not name or not token:
                raise ValueError(f"OPERATOR_TOKENS entry {name or '?'!r} is not name=token")
            if any(name == known for known, _ in pairs):
                raise ValueError(f"OPERATOR_TOKENS names operator {name!r} twice")
            pairs.append((name, token))
        return cls(tuple(pairs))

    @classmethod
    def from_env(cls) -> OperatorTokens:
        return cls.parse(AccessSettings().operator_tokens.get_secret_value())

    def operator_of(self, token: str) -> str | None:
        """The operator holding `token`, comparing against every token in constant time,
        so neither the answer's timing nor its position tells how close a guess was."""
        found = None
        for name, known in self.by_operator:
            if hmac.compare_digest(token.encode(), known.encode()):
                found = name
        return found


def _refuse(reason: str, detail: str) -> HTTPException:
    UNAUTHORISED.labels(reason).inc()
    log.warning("operator request refused: %s", detail)
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def tokens_of(request: Request) -> OperatorTokens:
    """The app's tokens: set on `app.state.operator_tokens`, else read once from the env."""
    tokens = getattr(request.app.state, "operator_tokens", None)
    if not isinstance(tokens, OperatorTokens):
        tokens = OperatorTokens.from_env()
        request.app.state.operator_tokens = tokens
    return tokens


def operator(request: Request) -> str:
    """FastAPI dependency: the name of the operator whose bearer token came with the request."""
    header = request.headers.get("authorization")
    if not header:
        raise _refuse("missing", "missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refuse("malformed", "the Authorization header must be 'Bearer <token>'")
    tokens = tokens_of(request)
    if not tokens.by_operator:
        raise _refuse("unconfigured", "no operator tokens are configured (OPERATOR_TOKENS)")
    name = tokens.operator_of(token.strip())
    if name is None:
        raise _refuse("unknown", "unknown token: it belongs to no operator")
    return name


Operator = Annotated[str, Depends(operator)]
"""An endpoint parameter of this type makes the endpoint need a valid operator token."""
