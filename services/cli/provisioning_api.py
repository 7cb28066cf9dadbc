"""How the CLI's line commands reach provisioning's HTTP API (PROVISIONING_URL, default
http://127.0.0.1:8003), with a one-line error instead of a traceback when the answer is
not what was asked for (an unknown line, a refused setting, the service down)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from services.cli.clients import service_url

TIMEOUT_S: Final = 10.0

# Tests answer for provisioning with an httpx.MockTransport; None: the network.
transport: httpx.BaseTransport | None = None


class ProvisioningError(Exception):
    """What went wrong, in one line."""


@dataclass(frozen=True)
class Provisioning:
    url: str

    def get(self, path: str) -> Any:
        return self._send("GET", path)

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self._send("PUT", path, json=body)

    def delete(self, path: str) -> Any:
        return self._send("DELETE", path)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            with httpx.Client(base_url=self.url, timeout=TIMEOUT_S, transport=transport) as client:
                response = client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ProvisioningError(
                f"cannot reach provisioning at {self.url} ({error}); is it running (`make run`)?"
            ) from None
        if response.is_error:
            raise ProvisioningError(error_detail(response))
        return response.json()


def provisioning() -> Provisioning:
    return Provisioning(service_url("provisioning", 8003).rstrip("/"))


@contextmanager
def reported(console: Console) -> Iterator[None]:
    """Turn a ProvisioningError into one red line and exit status 1."""
    try:
        yield
    except ProvisioningError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def error_detail(response: httpx.Response) -> str:
    """FastAPI's `detail`: a sentence, or its validation errors as `field: message; ...`."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        detail = "; ".join(_validation_error(d) for d in detail)
    return f"{detail or response.reason_phrase} (HTTP {response.status_code})"


def _validation_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    message = str(error.get("msg", error)).removeprefix("Value error, ")
    field = [str(part) for part in error.get("loc", []) if part not in ("body", "path")]
    return f"{'.'.join(field)}: {message}" if field else message
