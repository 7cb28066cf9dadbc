"""How the operator asks the orders service: its read API over HTTP."""

from __future__ import annotations

from typing import Any

import httpx


class OrdersClient:
    """One connection pool to orders, opened and closed with the app. Orders is asked
    with the operator's own token (`as_caller`): orders checks it too, and answers an
    operator, not the operator service, so nobody reads through it more than they may."""

    def __init__(self, base_url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10, transport=transport)

    async def close(self) -> None:
        await self._http.aclose()

    def as_caller(self, authorization: str) -> OrdersCaller:
        return OrdersCaller(self._http, {"Authorization": authorization})

    async def healthy(self) -> dict[str, Any]:
        try:
            response = await self._http.get("/health", timeout=3)
        except httpx.HTTPError as error:
            return {"ok": False, "url": self.base_url, "error": repr(error)}
        if response.status_code != 200:
            return {"ok": False, "url": self.base_url, "error": f"HTTP {response.status_code}"}
        return {"ok": True, "url": self.base_url}


class OrdersCaller:
    """Orders' read API, asked as one caller."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self._http = http
        self._headers = headers

    async def _get(self, path: str, **params: Any) -> dict[str, Any] | None:
        """The body of a GET, or None on 404 (or 422: what orders cannot even take names
        nothing it has)."""
        response = await self._http.get(path, params=params, headers=self._headers)
        if response.status_code in (404, 422):
            return None
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def order(self, order_id: str) -> dict[str, Any] | None:
        return await self._get(f"/orders/{order_id}")

    async def by_request(self, request_id: str) -> dict[str, Any] | None:
        """The order a request made, or the rejection it got (state REJECTED)."""
        return await self._get("/orders", request_id=request_id)

    async def of_line(self, iccid: str) -> list[dict[str, Any]]:
        """The line's orders, newest first, without their transitions."""
        found = await self._get(f"/lines/{iccid}/orders")
        return list(found["orders"]) if found else []

    async def sagas(self, stuck_after_s: float) -> httpx.Response:
        """Orders' saga overview (an operator's token: orders checks the scope too)."""
        return await self._http.get(
            "/sagas", params={"stuck_after_s": stuck_after_s}, headers=self._headers
        )
