"""`topup lag`: every consumer group and how far behind it is, per topic (via the operator)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from services.cli.answers import reported
from services.cli.operator_api import DEFAULT_URL, OperatorToken, OperatorUrl, connect


def lag(operator_url: OperatorUrl = DEFAULT_URL, token: OperatorToken = None) -> None:
    """Consumer groups and their lag per topic; dead letters waiting on `*.dlt` topics."""
    console = Console()
    with reported(console):
        sampled = connect(operator_url, token).get("/api/topics")
    console.print(_groups(sampled))
    waiting = [t for t in sampled["topics"] if t["dead_letter"] and t["end_offset"] > 0]
    for topic in waiting:
        count = topic["end_offset"]
        console.print(f"[red]{topic['name']}[/]: {count} dead letters (see `topup dlq list`)")


def _groups(sampled: dict[str, Any]) -> Table:
    table = Table(title=f"consumer lag at {sampled['sampled_at'][:19]}Z")
    table.add_column("topic")
    table.add_column("group")
    table.add_column("lag", justify="right")
    table.add_column("per partition (committed/end)")
    table.add_column("msg/s", justify="right")
    for topic in sampled["topics"]:
        ends = {p["partition"]: p["end_offset"] for p in topic["partitions"]}
        for group in topic["consumer_groups"]:
            behind = group["lag"] > 0
            partitions = "  ".join(
                f"p{p['partition']} {p['committed']}/{ends.get(p['partition'], '?')}"
                for p in group["partitions"]
            )
            table.add_row(
                topic["name"],
                group["group"],
                f"[bold yellow]{group['lag']}[/]" if behind else f"[green]{group['lag']}[/]",
                partitions,
                f"{topic['rate_per_s']:.1f}",
            )
    return table
