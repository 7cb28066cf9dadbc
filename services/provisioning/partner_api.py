"""The carrier over HTTP: an eSIM partner API modelled on the Airalo Partner API v2
(its OpenAPI document, as published: docs/vendor/airalo/).

The top-up journey, and what each answer means to the saga:
- `POST /v2/token` (client credentials) gives a bearer token; it is cached until shortly
  before it expires, and fetched again once when a call is answered 401.
- `POST /v2/orders/topups` (package_id, iccid, description) buys the top-up. The API has
  no idempotency key: our key `{order_id}:topup` travels as the order's description.
- `GET /v2/orders?filter[iccid]=...&filter[description]=...`: the line's top-up orders
  carrying our key. After a timeout this is asked before the key is ever sent again
  (`status`). (The line's package history, `GET /v2/sims/{iccid}/packages`, lists the
  packages a line holds but, as published, not the orders' descriptions: it cannot tell
  one top-up of a package from another, so it cannot settle a key.)
- `GET /v2/sims/{iccid}/usage`: the line's remaining and total data as the carrier counts it.
- `GET /v2/sims/{iccid}/topups` and `GET /v2/sims/{iccid}/packages`: the top-up packages a
  line may buy and the packages it holds.

Failures: connection refused (nothing sent), 503 and 429 raise `CarrierUnavailable`
(429 with its Retry-After); no answer in time after a top-up was sent, or a 500/504 to
it, raises `CarrierTimeout` (unknown outcome). A 4xx to a top-up is a permanent `Failed`
with a bounded reason of ours; the carrier's own texts are never passed on.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from services.provisioning.carrier import (
    Applied,
    CarrierTimeout,
    CarrierUnavailable,
    Failed,
    LineUsage,
    NotFound,
)
from shared.bounded_answers import BoundedTransport

log = logging.getLogger(__name__)

TOKEN_MARGIN_S: Final = 300.0  # a token is renewed this long before it expires (at most)
MAX_RETRY_AFTER_S: Final = 300.0  # a Retry-After is honoured up to this
APPLIED_ORDER_STATUSES: Final = frozenset({"completed", "partially_refunded", "refunded"})
ORDERS_PAGE: Final = "50"
# Answers to a top-up that say the carrier did nothing (busy, rate limited, not signed in).
NOTHING_DONE: Final = frozenset({401, 429, 503})


@dataclass(frozen=True)
class TopUpPackage:
    """A top-up package the carrier offers for a line (`GET /v2/sims/{iccid}/topups`)."""

    package_id: str
    data_mb: int  # 0 for an unlimited one
    days: int
    unlimited: bool


@dataclass(frozen=True)
class HeldPackage:
    """A package the line holds (`GET /v2/sims/{iccid}/packages`)."""

    package_id: str
    status: str
    remaining_mb: int


class PartnerApiCarrier:
    """The carrier adapter; `client` carries the base URL (CARRIER_API_BASE)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        client_id: str,
        client_secret: SecretStr,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout_s = timeout_s
        self._clock = clock
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()

    @classmethod
    def connect(
        cls, base_url: str, client_id: str, client_secret: SecretStr, timeout_s: float
    ) -> PartnerApiCarrier:
        client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout_s), transport=BoundedTransport()
        )
        return cls(client, client_id, client_secret, timeout_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def top_up(self, key: str, iccid: str, carrier_package_id: str) -> Applied | Failed:
        # multipart/form-data, as the document says; (None, value): a field, not a file.
        form = {
            "package_id": (None, carrier_package_id),
            "iccid": (None, iccid),
            "description": (None, key),
        }
        response = await self._call("POST", "/v2/orders/topups", effect=True, files=form)
        if response.status_code == 200:
            order = _data(response)
            reference = order.get("code") or order.get("id") if isinstance(order, dict) else None
            if reference is None:
                raise CarrierTimeout("the carrier's answer to the top-up could not be read")
            return Applied(reference=str(reference)[:40])
        if response.status_code in (400, 403, 404, 409, 422):
            return refusal(response)
        raise _transient(response, effect=True)

    async def status(self, key: str, iccid: str) -> Applied | Failed | NotFound:
        params = {"filter[iccid]": iccid, "filter[description]": key, "limit": ORDERS_PAGE}
        response = await self._call("GET", "/v2/orders", effect=False, params=params)
        if response.status_code != 200:
            raise _transient(response, effect=False)
        orders = _data(response)
        if not isinstance(orders, list):
            raise CarrierUnavailable("the carrier's order list could not be read")
        ours = [
            order
            for order in orders
            # The filter is a LIKE search: only our exact key on this line counts.
            if isinstance(order, dict) and order.get("description") == key
        ]
        for order in ours:
            status = order.get("status")
            slug = status.get("slug") if isinstance(status, dict) else None
            if isinstance(slug, str) and slug in APPLIED_ORDER_STATUSES:
                return Applied(reference=str(order.get("code") or order.get("id"))[:40])
        if ours:
            # An order carries our key in a state we cannot read: it exists, so it is
            # never sent again; asked about later.
            raise CarrierUnavailable("an order carries the key; its status is not one we know")
        return NotFound()

    async def usage(self, iccid: str) -> LineUsage | None:
        response = await self._call("GET", f"/v2/sims/{quote(iccid)}/usage", effect=False)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _transient(response, effect=False)
        usage = _data(response)
        try:
            return LineUsage(
                remaining_mb=int(usage.get("remaining") or 0),
                total_mb=int(usage.get("total") or 0),
                unlimited=bool(usage.get("is_unlimited")),
                status=str(usage.get("status") or "UNKNOWN")[:16],
                expires_at=_carrier_time(usage.get("expired_at")),
            )
        except (AttributeError, TypeError, ValueError, OverflowError) as unreadable:
            raise CarrierUnavailable("the carrier's usage answer could not be read") from unreadable

    async def topup_packages(self, iccid: str) -> list[TopUpPackage] | None:
        """The top-up packages the line may buy; None for a line the carrier does not know."""
        response = await self._call("GET", f"/v2/sims/{quote(iccid)}/topups", effect=False)
        if response.status_code in (404, 422):
            return None
        if response.status_code != 200:
            raise _transient(response, effect=False)
        try:
            return [
                TopUpPackage(
                    str(item["id"])[:100],
                    int(item["amount"]),
                    int(item["day"]),
                    bool(item["is_unlimited"]),
                )
                for item in _items(response)
            ]
        except (KeyError, TypeError, ValueError, OverflowError) as unreadable:
            raise CarrierUnavailable("the carrier's package list could not be read") from unreadable

    async def held_packages(self, iccid: str) -> list[HeldPackage] | None:
        """The packages the line holds, newest first; None for a line the carrier does not know."""
        response = await self._call("GET", f"/v2/sims/{quote(iccid)}/packages", effect=False)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _transient(response, effect=False)
        try:
            return [
                HeldPackage(
                    str(item["package"]["id"])[:100],
                    str(item["status"])[:32],
                    int(item["remaining"]),
                )
                for item in _items(response)
            ]
        except (KeyError, TypeError, ValueError, OverflowError) as unreadable:
            raise CarrierUnavailable("the line's packages could not be read") from unreadable

    async def _call(
        self, method: str, path: str, *, effect: bool, **request: Any
    ) -> httpx.Response:
        """One request with a valid token; a 401 renews the token and sends it once more
        (a 401 means the carrier did nothing)."""
        for _ in range(2):
            token = await self._valid_token()
            headers = {"Authorization": f"Bearer {token}"}
            response = await self._send(method, path, effect=effect, headers=headers, **request)
            if response.status_code != 401:
                return response
            log.info("carrier: token refused on %s %s; fetching a new one", method, path)
            self._forget(token)
        raise CarrierUnavailable("the carrier refused a fresh token")

    async def _valid_token(self) -> str:
        async with self._token_lock:
            if self._token is not None and self._clock() < self._token_expires_at:
                return self._token
            form = {
                "client_id": self._client_id,
                "client_secret": self._client_secret.get_secret_value(),
                "grant_type": "client_credentials",
            }
            response = await self._send("POST", "/v2/token", effect=False, data=form)
            if response.status_code in (401, 422):
                raise CarrierUnavailable("the carrier refused our client credentials")
            if response.status_code != 200:
                raise _transient(response, effect=False)
            granted = _data(response)
            token = granted.get("access_token") if isinstance(granted, dict) else None
            lifetime = granted.get("expires_in") if isinstance(granted, dict) else None
            if not _header_safe(token) or not isinstance(lifetime, int | float):
                raise CarrierUnavailable("the carrier's token answer could not be read")
            lifetime_s = float(lifetime) if math.isfinite(lifetime) and lifetime > 0 else 0.0
            self._token = str(token)
            self._token_expires_at = (
                self._clock() + lifetime_s - min(TOKEN_MARGIN_S, lifetime_s / 10)
            )
            return self._token

    def _forget(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def _send(
        self, method: str, path: str, *, effect: bool, **request: Any
    ) -> httpx.Response:
        """The request within CARRIER_TIMEOUT_S. Refused before anything was sent: nothing
        was done. No answer once sent: for a top-up the outcome is unknown."""
        headers = {"Accept": "application/json", **request.pop("headers", {})}
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._client.request(method, path, headers=headers, **request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise CarrierUnavailable(f"carrier not reachable ({type(exc).__name__})") from exc
        except (httpx.TransportError, TimeoutError) as exc:
            what = f"no answer from the carrier in {self._timeout_s:g}s ({type(exc).__name__})"
            if effect:
                raise CarrierTimeout(what) from exc
            raise CarrierUnavailable(what) from exc


def refusal(response: httpx.Response) -> Failed:
    """A refused top-up, in our own words: the carrier's texts are not passed on."""
    body = _json(response)
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(body, dict) and "code" in body and "reason" in body:
        return Failed(True, "line_suspended", "the carrier no longer tops this line up")
    if response.status_code == 404 or (isinstance(data, dict) and "iccid" in data):
        return Failed(True, "line_unknown", "the carrier does not know this line")
    if isinstance(data, dict) and data.get("package_id") == "validation.order_exceed_limit":
        return Failed(True, "purchase_limit", "the carrier's purchase limit is reached")
    if isinstance(data, dict) and "package_id" in data:
        return Failed(True, "package_unknown", "the carrier does not offer this package here")
    return Failed(
        True, "carrier_refused", f"the carrier refused the top-up (HTTP {response.status_code})"
    )


def _transient(response: httpx.Response, *, effect: bool) -> Exception:
    """What an unexpected answer means: busy (send again later) or, for a top-up that may
    have been processed (500, 504), unknown."""
    status = response.status_code
    if status == 429:
        wait = retry_after_s(response.headers)
        return CarrierUnavailable(f"carrier rate limit (429), retry after {wait:g}s", wait)
    if effect and status not in NOTHING_DONE:
        # A top-up was sent and the answer says neither done nor refused: unknown,
        # settled from the line's orders before it is ever sent again.
        return CarrierTimeout(f"carrier answered {status} after the top-up was sent")
    return CarrierUnavailable(f"carrier answered {status}")


def retry_after_s(headers: Mapping[str, str]) -> float:
    """Retry-After in seconds (a number or an HTTP date), bounded; 1 s when absent."""
    value = headers.get("retry-after", "").strip()[:64]
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (email.utils.parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            seconds = 1.0
    if not math.isfinite(seconds):
        seconds = 1.0 if math.isnan(seconds) else math.copysign(MAX_RETRY_AFTER_S, seconds)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _header_safe(token: object) -> bool:
    """A bearer token we can send: printable ASCII, no spaces, of a sane length."""
    return (
        isinstance(token, str)
        and 0 < len(token) <= 4096
        and token.isascii()
        and token.isprintable()
        and " " not in token
    )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _data(response: httpx.Response) -> Any:
    body = _json(response)
    return body.get("data") if isinstance(body, dict) else None


def _items(response: httpx.Response) -> list[dict[str, Any]]:
    data = _data(response)
    if not isinstance(data, list):
        raise CarrierUnavailable("the carrier's list could not be read")
    return [item for item in data if isinstance(item, dict)]


def _carrier_time(value: object) -> datetime | None:
    """The carrier's times: 'YYYY-MM-DD HH:MM:SS' (UTC) or ISO 8601."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value[:40])
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
