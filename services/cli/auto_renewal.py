"""`topup line auto-renew`: show, set or stop a line's auto-renewal (provisioning's
/lines/{iccid}/auto-renewal; docs/auto-renewal.md).

topup line auto-renew ICCID                                   the settings and renewal orders
topup line auto-renew ICCID --package eu-1gb-7d --when data_used_90 [--token ...]   opt in
topup line auto-renew ICCID --off                             opt out
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.answers import reported
from services.cli.line_usage import IccidArgument, when
from services.cli.provisioning_api import provisioning

STATUS_STYLE = {"active": "green", "paused": "yellow", "off": "dim"}


def auto_renew(
    iccid: IccidArgument,
    package: Annotated[
        str | None, typer.Option(help="opt in (or change): the package a renewal orders")
    ] = None,
    when_alert: Annotated[
        str,
        typer.Option(
            "--when",
            help="the alert whose crossing renews: data_used_75, data_used_90, data_exhausted, "
            "expires_in_3d, expires_in_1d, validity_ended",
        ),
    ] = "data_used_90",
    currency: str = "EUR",
    method: Annotated[str, typer.Option(help="card | paypal | alipay | wechat_pay")] = "card",
    token: Annotated[
        str,
        typer.Option(help="the saved payment token a renewal pays with (never a card number)"),
    ] = "tok_demo",  # noqa: S107 - a simulator token, not a secret
    msisdn: str = "+447700900123",
    email: str = "traveller@example.com",
    off: Annotated[bool, typer.Option("--off", help="opt out: no renewal from now on")] = False,
) -> None:
    """Show the line's auto-renewal, opt in with --package (resumes a paused one), or --off."""
    if off and package is not None:
        raise typer.BadParameter("--off or --package, not both", param_hint="--off")
    console = Console()
    path = f"/lines/{iccid}/auto-renewal"
    with reported(console):
        if off:
            settings = provisioning().delete(path)
        elif package is not None:
            body = {
                "alert": when_alert, "package_id": package, "currency": currency,
                "payment_method": method, "payment_token": token, "msisdn": msisdn, "email": email,
            }  # fmt: skip
            settings = provisioning().put(path, body)
        else:
            settings = provisioning().get(path)
    console.print(summary(settings), highlight=False)
    if settings["renewal_orders"]:
        console.print(renewal_orders(settings))


def summary(settings: dict[str, Any]) -> str:
    status = settings["status"]
    line = (
        f"auto-renewal of {settings['iccid']}: "
        f"[{STATUS_STYLE.get(status, 'bold')}]{status.upper()}[/]"
    )
    if status == "off":
        return line
    line += (
        f"\n  renews with [bold]{settings['package_id']}[/] ({settings['currency']}, "
        f"{settings['payment_method']} {settings['payment_token']}) when "
        f"[bold]{settings['alert']}[/] is raised"
    )
    if status == "paused":
        line += (
            f"\n  paused ({settings['paused_reason']}):"
            f"\n    {escape(settings['paused_message'] or '')}"
            "\n  opt in again (--package ...) to resume"
        )
    return line


def renewal_orders(settings: dict[str, Any]) -> Table:
    table = Table(title=f"renewal orders of {settings['iccid']}")
    for column in ("created", "try", "order", "status"):
        table.add_column(column)
    for order in settings["renewal_orders"]:
        table.add_row(
            when(order["created_at"]), str(order["attempt"]), str(order["order_id"]),
            escape(renewal_status(order)),
        )  # fmt: skip
    return table


def renewal_status(order: dict[str, Any]) -> str:
    """`completed`, `failed: payment_declined`, `due 17:31:05` (a retry, placed then)..."""
    if order["status"] == "due" and order["due_at"]:
        return f"due {when(order['due_at'])[11:]}"
    if order["failure_reason"]:
        return f"{order['status']}: {order['failure_reason']}"
    return str(order["status"])
