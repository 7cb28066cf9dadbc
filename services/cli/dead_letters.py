"""`topup dlq`: what the consumers dead-lettered, and replaying it, through the operator
service, which reads the `*.dlt` topics, republishes and keeps the audit log.

topup dlq list [--topic T] [--reason R] [--limit N]     newest first
topup dlq replay --id TOPIC:PARTITION:OFFSET [--id ...]  these dead letters
topup dlq replay --topic T --offset O [--partition P]    one, by where it is
topup dlq replay --all [--topic T] [--reason R]          all of them (of a topic, a reason)
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.answers import reported
from services.cli.display import clock, short
from services.cli.operator_api import (
    DEFAULT_URL,
    OperatorToken,
    OperatorUrl,
    connect,
)
from services.operator.dead_letter_store import dlt_of

dlq_app = typer.Typer(
    help="Dead letters: list what consumers could not process; replay it (audited).",
    no_args_is_help=True,
)

ERROR_WIDTH: Final = 60
PREVIEW_WIDTH: Final = 40


TopicOption = Annotated[
    str | None,
    typer.Option(help="a dead-letter topic, or its source topic (e.g. payments.events.v1)"),
]
ReasonOption = Annotated[
    str | None, typer.Option(help="only these (e.g. undecodable, business_rule)")
]


def _table(letters: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "source", "reason", "error", "failed at", "order / message"):
        table.add_column(column, overflow="fold")
    table.add_column("replayed")
    for letter in letters:
        about = escape(letter["order_id"] or "") or short(letter["payload_preview"], PREVIEW_WIDTH)
        replayed = (
            f"[green]by {letter['replayed_by']}[/] {clock(letter['replayed_at'])}"
            if letter["replayed_by"]
            else "-"
        )
        table.add_row(
            letter["id"],
            letter["source_topic"] or "?",
            f"[red]{letter['reason']}[/]",
            short(letter["error"], ERROR_WIDTH),
            clock(letter["failed_at"]),
            f"{escape(letter['type'] or '')} {about}".strip(),
            replayed,
        )
    return table


@dlq_app.command("list")
def list_dead_letters(
    topic: TopicOption = None,
    reason: ReasonOption = None,
    limit: Annotated[int, typer.Option(min=1, help="show the newest N")] = 50,
    operator_url: OperatorUrl = DEFAULT_URL,
    token: OperatorToken = None,
) -> None:
    """Dead letters of every `*.dlt` topic (or of one), newest first."""
    console = Console()
    with reported(console):
        found = connect(operator_url, token).get("/api/dead-letters", limit=limit)
    letters = [
        letter
        for letter in found["dead_letters"]
        if (topic is None or letter["topic"] == dlt_of(topic))
        and (reason is None or letter["reason"] == reason)
    ]
    if not letters:
        console.print("no dead letters")
        return
    console.print(_table(letters, f"{len(letters)} dead letters, newest first"))


@dlq_app.command("replay")
def replay_dead_letters(
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="TOPIC:PARTITION:OFFSET, as `dlq list` shows")
    ] = None,
    topic: TopicOption = None,
    offset: Annotated[int | None, typer.Option(min=0, help="the dead letter's offset")] = None,
    partition: Annotated[int, typer.Option(min=0, help="the dead letter's partition")] = 0,
    every: Annotated[bool, typer.Option("--all", help="every dead letter (of --topic)")] = False,
    reason: ReasonOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask first")] = False,
    operator_url: OperatorUrl = DEFAULT_URL,
    token: OperatorToken = None,
) -> None:
    """Publish dead letters again to their source topics: by --id, by --topic and --offset,
    or --all. The operator service replays them and records who did."""
    console = Console()
    body = _replay_request(ids or [], topic, offset, partition, every, reason)
    with reported(console):
        operator = connect(operator_url, token)
        if not yes:
            what = ", ".join(body["ids"]) if "ids" in body else _describe_all(topic, reason)
            typer.confirm(f"Replay {what}?", abort=True)
        with console.status("replaying ..."):
            answer = operator.post("/api/dead-letters/replay", body)
    replayed = answer["replayed"]
    for where in replayed:
        console.print(f"replayed {where}")
    console.print(f"replayed {len(replayed)} dead letters as [bold]{answer['by']}[/]")


def _replay_request(
    ids: list[str],
    topic: str | None,
    offset: int | None,
    partition: int,
    every: bool,
    reason: str | None,
) -> dict[str, Any]:
    """The body of POST /api/dead-letters/replay; an ambiguous request never leaves here."""
    if offset is not None:
        if topic is None:
            raise typer.BadParameter("--offset needs --topic", param_hint="--topic")
        ids = [*ids, f"{dlt_of(topic)}:{partition}:{offset}"]
    if every == bool(ids):
        raise typer.BadParameter("give --id ID..., or --topic T --offset O, or --all")
    if ids:
        if reason is not None:
            raise typer.BadParameter("--reason goes with --all", param_hint="--reason")
        return {"ids": ids}
    request: dict[str, Any] = {"all": True}
    if topic is not None:
        request["topic"] = dlt_of(topic)
    if reason is not None:
        request["reason"] = reason
    return request


def _describe_all(topic: str | None, reason: str | None) -> str:
    where = f" of {dlt_of(topic)}" if topic else ""
    why = f" with reason {reason}" if reason else ""
    return f"every dead letter{where}{why}"
