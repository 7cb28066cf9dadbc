"""`topup dlq`: what the consumers dead-lettered (shared/dead_letters.py), and replaying it.

topup dlq list [--topic T] [--limit N]                  every `*.dlt` topic, from the start
topup dlq replay --topic T --offset O [--partition P]   one dead letter back to its source
topup dlq replay --all [--topic T] [--reason R]         all of them (of a topic, a reason)

A replay publishes the original bytes and key to the source topic, with the original
headers and `dlq.replayed_from=<dlt>:<partition>:<offset>`. Consumers deduplicate by
event_id, so replaying a message twice is harmless; one that still cannot be
processed is dead-lettered again (with `dlq.replayed_from`, so the trail is kept).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Final

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from services.cli.clients import kafka_servers
from shared.topics import dead_letter_topic

dlq_app = typer.Typer(
    help="Dead letters: list what consumers could not process; replay it.",
    no_args_is_help=True,
)

DLT_SUFFIX: Final = dead_letter_topic("")
READ_TIMEOUT_S: Final = 60.0
ERROR_WIDTH: Final = 60
KEY_WIDTH: Final = 24


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    raw_headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, record: Any) -> DeadLetter:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            raw_headers=tuple((str(k), bytes(v or b"")) for k, v in record.headers or ()),
        )

    @property
    def headers(self) -> dict[str, str]:
        return {k: v.decode(errors="replace") for k, v in self.raw_headers}

    @property
    def where(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def source(self) -> str | None:
        return self.headers.get("dlq.source.topic")

    @property
    def reason(self) -> str:
        return self.headers.get("dlq.reason", "?")

    def replay_headers(self) -> list[tuple[str, bytes]]:
        kept = [(k, v) for k, v in self.raw_headers if not k.startswith("dlq.")]
        return [*kept, ("dlq.replayed_from", self.where.encode())]


def dlt_of(topic: str) -> str:
    """A dead-letter topic named directly or by its source topic."""
    return topic if topic.endswith(DLT_SUFFIX) else dead_letter_topic(topic)


def _consumer() -> AIOKafkaConsumer:
    # A fresh group that never commits: reading here moves nobody's offsets.
    return AIOKafkaConsumer(
        bootstrap_servers=kafka_servers(),
        group_id=f"topup-dlq-{uuid.uuid4()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def _partitions(topic: str | None) -> list[TopicPartition]:
    """The partitions of one dead-letter topic, or of every `*.dlt` topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_servers())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [dlt_of(topic)] if topic else sorted(t for t in existing if t.endswith(DLT_SUFFIX))
        missing = [name for name in names if name not in existing]
        if missing:
            raise typer.BadParameter(
                f"no topic {missing[0]} on {kafka_servers()}", param_hint="--topic"
            )
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    return sorted(
        TopicPartition(str(t["topic"]), int(p["partition"]))
        for t in described
        for p in t["partitions"]
    )


async def read_dead_letters(topic: str | None = None) -> list[DeadLetter]:
    """Every dead letter there is now (of one topic, or of every `*.dlt` topic)."""
    partitions = await _partitions(topic)
    if not partitions:
        return []
    consumer = _consumer()
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        found: list[DeadLetter] = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=500)
                for tp, records in batch.items():
                    found += [DeadLetter.of(r) for r in records if r.offset < ends[tp]]
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()


async def read_dead_letter(topic: str, partition: int, offset: int) -> DeadLetter | None:
    """The dead letter at one offset, or None when there is none."""
    tp = TopicPartition(dlt_of(topic), partition)
    if tp not in await _partitions(topic):
        return None
    consumer = _consumer()
    await consumer.start()
    try:
        consumer.assign([tp])
        ends = await consumer.end_offsets([tp])
        if offset >= ends[tp]:
            return None
        consumer.seek(tp, offset)
        async with asyncio.timeout(READ_TIMEOUT_S):
            while await consumer.position(tp) <= offset:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                for record in batch.get(tp, []):
                    return DeadLetter.of(record) if record.offset == offset else None
        return None  # the offset is gone (retention) or was never a record
    finally:
        await consumer.stop()


async def replay(letters: Iterable[DeadLetter], done: Callable[[], None] = lambda: None) -> int:
    """Publish each dead letter's bytes and key to its source topic; how many were."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_servers(), acks="all", enable_idempotence=True
    )
    await producer.start()
    replayed = 0
    try:
        for letter in letters:
            if letter.source is None:
                continue
            await producer.send_and_wait(
                letter.source, letter.value, key=letter.key, headers=letter.replay_headers()
            )
            replayed += 1
            done()
    finally:
        await producer.stop()
    return replayed


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _key(key: bytes | None) -> str:
    return "-" if key is None else _short(key.decode(errors="replace"), KEY_WIDTH)


def _newest_last(letter: DeadLetter) -> tuple[str, str, int, int]:
    return letter.headers.get("dlq.failed_at", ""), letter.topic, letter.partition, letter.offset


def _in_partition_order(letter: DeadLetter) -> tuple[str, int, int]:
    return letter.topic, letter.partition, letter.offset


def _table(letters: list[DeadLetter], title: str) -> Table:
    table = Table(title=title)
    for column in ("dlt topic", "p/offset", "source (p@offset)", "reason", "error"):
        table.add_column(column, overflow="fold")
    table.add_column("failed at")
    table.add_column("key", overflow="fold")
    for letter in letters:
        h = letter.headers
        source = f"{h.get('dlq.source.topic', '?')}[{h.get('dlq.source.partition', '?')}]"
        table.add_row(
            letter.topic,
            f"{letter.partition}/{letter.offset}",
            f"{source}@{h.get('dlq.source.offset', '?')}",
            letter.reason,
            _short(h.get("dlq.error", ""), ERROR_WIDTH),
            h.get("dlq.failed_at", "")[:23],
            _key(letter.key),
        )
    return table


TopicOption = Annotated[
    str | None,
    typer.Option(help="a dead-letter topic, or its source topic (e.g. payments.events.v1)"),
]


@dlq_app.command("list")
def list_dead_letters(
    topic: TopicOption = None,
    limit: Annotated[int, typer.Option(min=1, help="show the newest N")] = 50,
) -> None:
    """Dead letters of every `*.dlt` topic (or of one), read from the beginning."""
    console = Console()
    letters = sorted(asyncio.run(read_dead_letters(topic)), key=_newest_last)
    if not letters:
        console.print("no dead letters")
        return
    shown = letters[-limit:]
    title = f"{len(letters)} dead letters" + (
        f", the newest {len(shown)}" if shown != letters else ""
    )
    console.print(_table(shown, title))


@dlq_app.command("replay")
def replay_dead_letters(
    topic: TopicOption = None,
    offset: Annotated[int | None, typer.Option(min=0, help="the dead letter's offset")] = None,
    partition: Annotated[int, typer.Option(min=0, help="the dead letter's partition")] = 0,
    every: Annotated[bool, typer.Option("--all", help="every dead letter (of --topic)")] = False,
    reason: Annotated[
        str | None, typer.Option(help="with --all: only these (e.g. business_rule)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask first")] = False,
) -> None:
    """Publish dead letters again to their source topics: one (--topic and --offset) or --all."""
    console = Console()
    if every == (offset is not None):
        raise typer.BadParameter("give either --topic T --offset O [--partition P] or --all")
    if offset is not None:
        if topic is None:
            raise typer.BadParameter("--offset needs --topic", param_hint="--topic")
        if reason is not None:
            raise typer.BadParameter("--reason goes with --all", param_hint="--reason")
        letter = asyncio.run(read_dead_letter(topic, partition, offset))
        if letter is None:
            console.print(f"[red]no dead letter at {dlt_of(topic)}:{partition}:{offset}[/]")
            raise typer.Exit(1)
        if letter.source is None:
            console.print(f"[red]{letter.where} has no dlq.source.topic header[/]")
            raise typer.Exit(1)
        console.print(_table([letter], "to replay"))
        if not yes:
            typer.confirm(f"Publish it again to {letter.source}?", abort=True)
        asyncio.run(replay([letter]))
        console.print(f"replayed {letter.where} to {letter.source}")
        return
    letters = sorted(
        (
            letter
            for letter in asyncio.run(read_dead_letters(topic))
            if letter.source is not None and (reason is None or letter.reason == reason)
        ),
        key=_in_partition_order,
    )
    if not letters:
        console.print("nothing to replay")
        return
    if not yes:
        typer.confirm(f"Publish {len(letters)} dead letters again to their topics?", abort=True)
    with Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        task = progress.add_task("replay", total=len(letters))
        replayed = asyncio.run(replay(letters, lambda: progress.advance(task)))
    console.print(f"replayed {replayed} dead letters")
