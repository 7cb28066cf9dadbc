"""How the CLI's line commands reach provisioning's HTTP API (PROVISIONING_URL, default
http://127.0.0.1:8003), with a one-line error instead of a traceback when the answer is
not what was asked for (an unknown line, a refused setting, the service down)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import httpx

from services.cli.answers import CliError, error_detail
from services.cli.clients import api_headers, service_url

TIMEOUT_S: Final = 10.0

# Tests answer for provisioning with an httpx.MockTransport; None: the network.
transport: httpx.BaseTransport | None = None


class ProvisioningError(CliError):
    """What provisioning refused, or that it could not be reached."""


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
            with httpx.Client(
                base_url=self.url, timeout=TIMEOUT_S, transport=transport, headers=api_headers()
            ) as client:
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
