"""How the CLI reaches the operator service (services/operator): its URL, the operator's
token, and a one-line error instead of a traceback when either is wrong.

The token comes from --token, else TOPUP_OPERATOR_TOKEN, else the file `make run` writes
(var/operator-token; TOPUP_OPERATOR_TOKEN_FILE names another). Going through the operator
rather than straight to Kafka is what puts an operator's name on every replay (its audit log).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
import typer

from services.cli.answers import CliError, error_detail
from services.cli.clients import token_from

DEFAULT_URL: Final = "http://127.0.0.1:8000"
TOKEN_FILE: Final = Path("var") / "operator-token"
TIMEOUT_S: Final = 30.0

OperatorUrl = Annotated[
    str,
    typer.Option(
        "--operator-url", envvar="TOPUP_OPERATOR_URL", help="the operator service", show_envvar=True
    ),
]
OperatorToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="TOPUP_OPERATOR_TOKEN",
        help="your operator token (else the one `make run` wrote to var/operator-token)",
        show_envvar=True,
        show_default=False,
    ),
]


class OperatorError(CliError):
    """What went wrong, in one line an operator can act on."""


def token_from_file() -> str | None:
    return token_from("", "TOPUP_OPERATOR_TOKEN_FILE", TOKEN_FILE)


@dataclass(frozen=True)
class Operator:
    url: str
    token: str

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._send("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", path, json=body)

    def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            with httpx.Client(base_url=self.url, timeout=TIMEOUT_S) as client:
                response = client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise OperatorError(
                f"cannot reach the operator at {self.url} ({error}); is it running (`make run`)?"
            ) from None
        if response.status_code == 401:
            raise OperatorError(
                f"the operator at {self.url} refused the token: {error_detail(response)}; "
                "give --token or TOPUP_OPERATOR_TOKEN (`make run` writes var/operator-token)"
            )
        if response.is_error:
            raise OperatorError(error_detail(response))
        body: dict[str, Any] = response.json()
        return body


def connect(url: str, token: str | None) -> Operator:
    token = token or token_from_file()
    if not token:
        raise OperatorError(
            "no operator token: give --token, set TOPUP_OPERATOR_TOKEN, "
            "or start the stack with `make run` (it writes var/operator-token)"
        )
    return Operator(url.rstrip("/"), token)
