"""`topup line usage` and `topup line alerts`: what a line used in its package cycle and
the alerts it raised (provisioning's GET /lines/{iccid}/usage and /alerts;
docs/usage-alerts.md says what each number means)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli.answers import reported
from services.cli.provisioning_api import provisioning

IccidArgument = Annotated[str, typer.Argument(help="the line's ICCID")]


def when(timestamp: str | None) -> str:
    """`2026-11-24T17:21:05.123456+00:00` -> `2026-11-24 17:21:05` (the API's times are UTC)."""
    return timestamp[:19].replace("T", " ") if timestamp else "-"


def megabytes(value: int | None, none: str = "unlimited") -> str:
    return none if value is None else f"{value} MB"


def line_usage(iccid: IccidArgument) -> None:
    """The line's package cycle (quota, used, left, overage) and its latest usage reports."""
    console = Console()
    with reported(console):
        usage = provisioning().get(f"/lines/{iccid}/usage")
    cycle = usage["cycle"]
    if cycle is None:
        console.print(f"line {iccid}: no package cycle yet (no top-up applied)")
    else:
        console.print(cycle_summary(iccid, cycle), highlight=False)
    reports = usage["reports"]
    if not reports:
        console.print("no usage reported yet")
        return
    table = Table(title=f"latest usage reports of {iccid}, newest first")
    for column in ("period", "used", "from balance", "overage", "received"):
        table.add_column(column, justify="right" if column in ("used", "overage") else "left")
    for report in reports:
        table.add_row(
            f"{when(report['period_start'])} - {when(report['period_end'])[11:]}",
            f"{report['used_mb']} MB",
            f"{report['applied_mb']} MB",
            _overage(report["overage_mb"]),
            when(report["received_at"]),
        )
    console.print(table)


def cycle_summary(iccid: str, cycle: dict[str, Any]) -> str:
    percent = cycle["percent_used"]
    used = f"used {cycle['used_mb']} MB" + (f" ({percent:.1f}%)" if percent is not None else "")
    ends = "[red]expired[/]" if cycle["expired"] else f"valid until {when(cycle['valid_until'])}"
    return (
        f"line {iccid}, package cycle of order {cycle['order_id']}\n"
        f"  since {when(cycle['started_at'])}, {ends}\n"
        f"  quota {megabytes(cycle['quota_mb'])}, [bold]{used}[/], "
        f"{megabytes(cycle['remaining_mb'], none='no cap')} left, "
        f"overage {_overage(cycle['overage_mb'])}"
    )


def line_alerts(iccid: IccidArgument) -> None:
    """Every alert the line raised, newest first: each threshold once per package cycle."""
    console = Console()
    with reported(console):
        alerts: list[dict[str, Any]] = provisioning().get(f"/lines/{iccid}/alerts")
    if not alerts:
        console.print(f"line {iccid}: no alerts yet")
        return
    table = Table(title=f"alerts of {iccid}, newest first")
    for column in ("raised", "alert", "used", "left", "overage", "valid until", "cycle"):
        table.add_column(column)
    for alert in alerts:
        table.add_row(
            when(alert["raised_at"]),
            f"[bold]{alert['alert']}[/]",
            f"{alert['data_used_mb']} MB",
            megabytes(alert["data_remaining_mb"]),
            _overage(alert["overage_mb"]),
            when(alert["valid_until"])[:16],
            str(alert["cycle_order_id"])[:8],  # of the order: `topup line usage` has it whole
        )
    console.print(table)


def _overage(mb: int) -> str:
    return f"[red]{mb} MB[/]" if mb else "0 MB"
