"""`topup demo`: a publisher simulation, so the dashboard has something to show.

It places a realistic mix of orders on orders.commands.v1, as the storefront and the app
would: most are paid by card or PayPal and complete; some cards are declined; some ask
for a package that does not exist and are rejected; a few are paid with Alipay or WeChat
Pay, which confirm a moment later. Lines repeat, as renewals do.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.cli.clients import api_headers, publisher, service_url
from services.orders.catalog import Catalog, load_catalog
from services.orders.saga import FINAL
from shared import topics
from shared.card_numbers import luhn_valid

# One cycle of the mix: 15 paid, 2 declined, 2 confirmed later, 1 rejected; every kind
# shows up within the first seven orders, so even a short demo has each.
MIX: Final = (
    "paid", "paid", "declined", "paid", "confirmed later", "paid", "rejected",
    "paid", "paid", "paid", "paid", "confirmed later", "paid", "paid", "declined",
    "paid", "paid", "paid", "paid", "paid",
)  # fmt: skip
EXPECTED: Final = {
    "paid": "COMPLETED",
    "declined": "PAYMENT_FAILED",
    "confirmed later": "COMPLETED",
    "rejected": "REJECTED",
}
ENDED: Final = {*FINAL, "REJECTED"}
POLL_S: Final = 0.5


@dataclass(frozen=True)
class DemoOrder:
    kind: str
    body: dict[str, Any]

    @property
    def request_id(self) -> str:
        return str(self.body["request_id"])


def random_iccid(rng: random.Random) -> str:
    """A valid 19-digit ICCID (89, a UK-like issuer, a Luhn check digit)."""
    body = "8944" + "".join(rng.choices("0123456789", k=14))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def demo_orders(count: int, rng: random.Random, catalog: Catalog) -> list[DemoOrder]:
    run = uuid.uuid4().hex[:8]
    lines = [random_iccid(rng) for _ in range(max(3, count // 4))]
    return [
        DemoOrder(kind, _request(kind, f"demo-{run}-{n}", rng.choice(lines), rng, catalog))
        for n, kind in ((n, MIX[n % len(MIX)]) for n in range(count))
    ]


def _request(
    kind: str, request_id: str, iccid: str, rng: random.Random, catalog: Catalog
) -> dict[str, Any]:
    later = kind == "confirmed later"
    currency = "CNY" if later else rng.choice(("EUR", "EUR", "EUR", "GBP", "USD"))
    priced = sorted(p.package_id for p in catalog.packages.values() if currency in p.prices)
    package = "moon-1tb" if kind == "rejected" else rng.choice(priced)
    now = datetime.now(UTC)
    promotions = [c for c, p in catalog.promotions.items() if p.applies(package, currency, now)]
    return {
        "type": "PlaceOrder",
        "request_id": request_id,
        "iccid": iccid,
        "package_id": package,
        "currency": currency,
        "payment_method": rng.choice(("alipay", "wechat_pay") if later else ("card", "paypal")),
        "payment_token": "tok_decline_demo" if kind == "declined" else "tok_demo",
        "msisdn": f"+4477009{rng.randrange(10_000, 100_000)}",
        "email": f"traveller{rng.randrange(1000)}@example.com",
        "promotion_code": rng.choice(promotions) if promotions and rng.random() < 0.3 else None,
    }


async def place(orders: list[DemoOrder], rate: float, done: Any) -> None:
    """Publish every order, `rate` per second."""
    start = time.monotonic()
    async with publisher() as send:
        for n, order in enumerate(orders):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            await send(topics.ORDERS_COMMANDS, order.body, order.body["iccid"])
            done()


async def outcomes(orders: list[DemoOrder], within: float, done: Any) -> dict[str, str]:
    """Each order's state once it ends (or its last state when `within` seconds are up)."""
    base = service_url("orders", 8001)
    states: dict[str, str] = {}
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=api_headers()) as client:
        while time.monotonic() < deadline:
            open_ = [o.request_id for o in orders if states.get(o.request_id) not in ENDED]
            if not open_:
                break
            for request_id in open_:
                response = await client.get("/orders", params={"request_id": request_id})
                if response.status_code == 200:
                    states[request_id] = response.json()["state"]
                    if states[request_id] in ENDED:
                        done()
            await asyncio.sleep(POLL_S)
    return states


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console,
    )  # fmt: skip


def _summary(orders: list[DemoOrder], states: dict[str, str]) -> Table:
    table = Table(title="demo orders by kind and outcome")
    for column in ("kind", "expected", "outcome", "orders"):
        table.add_column(column)
    counted = Counter((o.kind, states.get(o.request_id, "not seen")) for o in orders)
    for (kind, state), count in sorted(counted.items()):
        expected = EXPECTED[kind]
        shown = state if state == expected else f"[yellow]{state}[/]"
        table.add_row(kind, expected, shown, str(count))
    return table


def demo(
    orders: Annotated[int, typer.Option(min=1, help="how many orders to place")] = 200,
    rate: Annotated[float, typer.Option(min=0.1, help="orders per second")] = 10.0,
    wait: Annotated[bool, typer.Option(help="then follow the orders until they end")] = True,
    timeout: Annotated[float, typer.Option(help="how long to follow them, in seconds")] = 120.0,
    seed: Annotated[int | None, typer.Option(help="the same seed, the same orders")] = None,
) -> None:
    """Place a realistic mix of orders (most complete; some declined, some rejected, some
    confirmed later), as the storefront and the app would, so the dashboard moves."""
    console = Console()
    rng = random.Random(seed)  # noqa: S311 - demo data, not a secret
    placed = demo_orders(orders, rng, load_catalog())
    console.print(f"placing {orders} orders at {rate:g}/s on {topics.ORDERS_COMMANDS}")
    with _progress(console) as progress:
        publishing = progress.add_task("published", total=len(placed))
        asyncio.run(place(placed, rate, lambda: progress.advance(publishing)))
        if not wait:
            return
        settling = progress.add_task("ended", total=len(placed))
        states = asyncio.run(outcomes(placed, timeout, lambda: progress.advance(settling)))
    console.print(_summary(placed, states))
    still_open = sum(1 for o in placed if states.get(o.request_id) not in ENDED)
    if still_open:
        console.print(f"[yellow]{still_open} orders had not ended after {timeout:g}s[/]")
