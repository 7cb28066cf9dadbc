"""`topup order timeline`: an order's transitions and every Kafka message about it, across
topics and dead letters, in time order (via the operator's search)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.answers import reported
from services.cli.display import clock, money, short
from services.cli.operator_api import DEFAULT_URL, OperatorToken, OperatorUrl, connect
from shared.logs import mask

SUMMARY_WIDTH = 70


def order_timeline(
    query: Annotated[str, typer.Argument(help="an order id, a request id or a line (ICCID)")],
    operator_url: OperatorUrl = DEFAULT_URL,
    token: OperatorToken = None,
) -> None:
    """Every message about an order across topics, found by order id, request id or line."""
    console = Console()
    with reported(console):
        found = connect(operator_url, token).get("/api/orders/search", q=query)
    orders = found["orders"]
    kind = found["kind"].replace("_", " ")
    console.print(f"{len(orders)} order(s) by {kind} {escape(mask(query))}")
    for order in orders:
        console.print(_messages(order))


def _messages(order: dict[str, Any]) -> Table:
    steps = " -> ".join(t["state"] for t in order["transitions"])
    table = Table(
        title=f"order {order['order_id']}  [bold]{order['state']}[/]  {order['package_id']}  "
        f"{money(order['total'])}",
        caption=escape(f"request {order['request_id']}, line {order['iccid']}: {steps}"),
        title_justify="left",
        caption_justify="left",
    )
    for column in ("time", "topic", "p@offset", "type", "summary"):
        table.add_column(column, overflow="fold")
    for message in order["timeline"]:
        dead = message["topic"].endswith(".dlt")
        table.add_row(
            clock(message["timestamp"]),
            f"[red]{message['topic']}[/]" if dead else message["topic"],
            f"{message['partition']}@{message['offset']}",
            escape(message["type"] or "?"),
            short(message["summary"], SUMMARY_WIDTH),
        )
    return table
