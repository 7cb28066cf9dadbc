"""The `topup` command line.

Publishers (Kafka and the services' HTTP APIs):
  topup catalog                                   what is on sale
  topup order place --iccid 89... --package eu-5gb-30d [--wait]
  topup order show ORDER_ID | --request-id ID     state and transitions
  topup line show ICCID                           balance, validity, history
  topup line usage ICCID | alerts ICCID           its package cycle's usage; the alerts raised
  topup line auto-renew ICCID [--package P --when ALERT | --off]   show, opt in, opt out
  topup demo [--orders 200] [--rate 10]           a realistic mix of orders

Operators (the operator service, with a token; see operator_api.py):
  topup order timeline ORDER_ID | REQUEST_ID | ICCID   every message about an order
  topup lag                                       consumer groups and their lag
  topup dlq list | replay                         dead letters; replays are audited
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli.auto_renewal import auto_renew
from services.cli.clients import get_json, publish, service_url
from services.cli.dead_letters import dlq_app
from services.cli.demo import demo
from services.cli.display import amount, money
from services.cli.lag import lag
from services.cli.line_usage import line_alerts, line_usage
from services.cli.timeline import order_timeline
from services.orders.catalog import load_catalog
from services.orders.saga import FINAL
from shared import topics
from shared.events import order_id_for

app = typer.Typer(help="Place and follow data top-ups; inspect lines.", no_args_is_help=True)
order_app = typer.Typer(
    help="Orders: place one, show one, follow its messages.", no_args_is_help=True
)
line_app = typer.Typer(
    help="Lines: balance, validity, history, usage, alerts and auto-renewal.", no_args_is_help=True
)
app.add_typer(order_app, name="order")
app.add_typer(line_app, name="line")
app.add_typer(dlq_app, name="dlq")
app.command()(demo)
app.command()(lag)
order_app.command("timeline")(order_timeline)
line_app.command("usage")(line_usage)
line_app.command("alerts")(line_alerts)
line_app.command("auto-renew")(auto_renew)
console = Console()


def orders_url() -> str:
    return service_url("orders", 8001)


def provisioning_url() -> str:
    return service_url("provisioning", 8003)


ENDED = {*FINAL, "REJECTED"}


@app.command()
def catalog() -> None:
    """The packages on sale, their prices, and the promotion codes."""
    shipped = load_catalog()
    table = Table(title=f"Catalog {shipped.version}")
    for column in ("package", "data", "days", "prices"):
        table.add_column(column)
    for package in shipped.packages.values():
        data = (
            f"{package.data_mb} MB" if package.data_mb else f"unlimited ({package.fair_use_mb} MB)"
        )
        prices = ", ".join(amount(m, c) for c, m in package.prices.items())
        table.add_row(package.package_id, data, str(package.validity_days), prices)
    console.print(table)
    for promotion in shipped.promotions.values():
        console.print(f"  [bold]{promotion.code}[/]: {promotion.description}")


@order_app.command("place")
def place_order(
    iccid: Annotated[str, typer.Option(help="the line's ICCID (19-20 digits, starts 89)")],
    package: Annotated[str, typer.Option(help="a package id from `topup catalog`")],
    currency: str = "EUR",
    method: Annotated[str, typer.Option(help="card | paypal | alipay | wechat_pay")] = "card",
    token: Annotated[
        str,
        typer.Option(
            help="payment token (tok_decline..., tok_pending_forever... simulate outcomes)"
        ),
    ] = "tok_demo",  # noqa: S107 - a simulator token, not a secret
    msisdn: str = "+447700900123",
    email: str = "traveller@example.com",
    promo: Annotated[str | None, typer.Option(help="a promotion code")] = None,
    request_id: Annotated[
        str | None, typer.Option(help="your idempotency key; random if left out")
    ] = None,
    wait: Annotated[bool, typer.Option(help="follow the order until it ends")] = True,
    timeout: float = 60.0,
) -> None:
    """Publish a PlaceOrder on orders.commands.v1, as an internal system would."""
    request_id = request_id or f"cli-{uuid.uuid4()}"
    body = {
        "type": "PlaceOrder", "request_id": request_id, "iccid": iccid, "package_id": package,
        "currency": currency, "payment_method": method, "payment_token": token,
        "msisdn": msisdn, "email": email, "promotion_code": promo,
    }  # fmt: skip
    asyncio.run(publish(topics.ORDERS_COMMANDS, body, key=iccid))
    order_id = order_id_for(request_id)
    console.print(f"published request [bold]{request_id}[/] -> order [bold]{order_id}[/]")
    if wait:
        _follow(request_id, timeout)


@order_app.command("show")
def show_order(
    order_id: Annotated[str | None, typer.Argument()] = None,
    request_id: Annotated[str | None, typer.Option()] = None,
) -> None:
    """An order's state, price and timeline."""
    if request_id:
        found = asyncio.run(get_json(f"{orders_url()}/orders?request_id={request_id}"))
    elif order_id:
        found = asyncio.run(get_json(f"{orders_url()}/orders/{order_id}"))
    else:
        raise typer.BadParameter("give an ORDER_ID or --request-id")
    if found is None:
        console.print("[red]no such order[/]")
        raise typer.Exit(1)
    _print_order(found)


@line_app.command("show")
def show_line(iccid: str) -> None:
    """A line's balance, validity and top-ups, and its orders."""
    line = asyncio.run(get_json(f"{provisioning_url()}/lines/{iccid}"))
    history = asyncio.run(get_json(f"{orders_url()}/lines/{iccid}/orders")) or {"orders": []}
    if line is None:
        console.print(f"line {iccid}: no top-up yet")
    else:
        console.print_json(data=line)
    table = Table(title=f"orders of {iccid}")
    for column in ("created", "order", "package", "total", "state"):
        table.add_column(column)
    for order in history["orders"]:
        table.add_row(
            order["created_at"][:19], order["order_id"], order["package_id"],
            money(order["total"]), order["state"],
        )  # fmt: skip
    console.print(table)


def _follow(request_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_state = None
    with console.status("waiting for the order ..."):
        while time.monotonic() < deadline:
            found = asyncio.run(get_json(f"{orders_url()}/orders?request_id={request_id}"))
            state = found["state"] if found else None
            if state != last_state and state is not None:
                console.print(f"  {state}")
                last_state = state
            if found and state in ENDED:
                _print_order(found)
                return
            time.sleep(0.3)
    console.print(f"[yellow]still {last_state} after {timeout:.0f}s[/]")
    raise typer.Exit(2)


def _print_order(order: dict[str, Any]) -> None:
    if order["state"] == "REJECTED":
        console.print(f"[red]REJECTED[/] ({order['reason']}): {order['message']}")
        return
    console.print(
        f"order {order['order_id']}  [bold]{order['state']}[/]  {order['package_id']}  "
        f"price {money(order['price'])} - discount {money(order['discount'])} + fee "
        f"{money(order['fee'])} = [bold]{money(order['total'])}[/]"
    )
    table = Table()
    for column in ("at", "from", "to", "cause"):
        table.add_column(column)
    for step in order["timeline"]:
        table.add_row(step["at"][11:23], step["from_state"] or "", step["to_state"], step["cause"])
    console.print(table)


if __name__ == "__main__":
    app()
