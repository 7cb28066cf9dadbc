"""Batch-native consumption: what has arrived on a partition, handled in one transaction.

A subscriber declared with `saga_subscriber` (shared/kafka.py) handles one message at a
time through FastStream, with every middleware (metrics, tracing, log context, dead
letters and their retries). `in_batches` gives it a second way, the fast one:

- One aiokafka consumer per (service, topic) group takes what has arrived (`getmany`:
  at once when records are buffered, no sleep after an empty poll, so at low load a
  batch is one message and latency does not grow).
- Each partition's records are handled in one database transaction: the inbox rows in
  one statement (a repeat is found from what it returns), then the service's step for
  each message, in offset order (one line's messages stay in order), each under its
  message's log context; the outbox rows in one statement; commit. The partitions of a
  fetch are handled side by side; then each one's offset is committed once.
- Anything else goes one message at a time through the subscriber itself, as before:
  a record over the contract's size, one the batch cannot parse, and every record of a
  batch whose transaction failed. So one bad message is dead-lettered alone, with
  today's reasons, and the rest go on. A message that FastStream gives back (its
  dead letter could not be written) is sought back and delivered again, and nothing
  after it on its partition is committed.
- While tracing is on, every message goes one at a time, each its own span.

The guarantees are today's (docs/guarantees.md): offsets are committed only after the
transaction that recorded the messages; a crash in between delivers them again and the
inbox skips what was done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from faststream._internal.endpoint.subscriber.usecase import SubscriberUsecase  # pinned
from faststream.kafka.subscriber.usecase import ConcurrentBetweenPartitionsSubscriber
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import outbox
from shared.dead_letters import classify
from shared.inbox import first_deliveries
from shared.limits import MAX_MESSAGE_BYTES
from shared.logs import about_message, now_and_then
from shared.metrics import BATCH_SIZES, CONSUMED
from shared.outbox import Step
from shared.progress import PROGRESS

log = logging.getLogger(__name__)

M = TypeVar("M")


class Context(Protocol):
    """What a step reads its service's shared objects from (FastStream's ContextRepo)."""

    def get(self, key: str, default: Any = None) -> Any: ...


# How long a fetch waits for a first record when none is buffered (the broker answers
# as soon as one arrives: this is only how often an idle loop looks up).
FETCH_WAIT_MS: Final = 500


@dataclass(frozen=True)
class Batched(Generic[M]):
    """How a subscriber's messages are handled many at a time.

    `parse`: the message from its bytes (raising: it goes one at a time, to be refused
    there); `step`: what one message does, the same function the one-at-a-time handler
    runs, given the broker's context (settings and what the service shares); `inbox`:
    the message's `(event_id, type)` to record once, or None for a message whose own
    key makes it idempotent.

    For a service that calls the outside world: `key`, what a message is about (a
    payment, a top-up): a batch is cut before a message whose key is already in it, so
    one key's commands are handled one transaction after the other; `settle`, awaited
    for each key before its transaction, until no call about it is still out (the one
    an earlier transaction asked for). A step asks for calls with `after_commit`.

    For a service whose steps share a unit of work: `prepare`, given the messages the
    transaction will step through (repeats left out), before the first step (loading
    and locking, in one statement, every row they are about); `finish`, after the last
    (writing back what they changed, a statement per table)."""

    parse: Callable[[bytes], M]
    step: Callable[[M, Context], Step]
    inbox: Callable[[M], tuple[uuid.UUID, str]] | None = None
    key: Callable[[M], str] | None = None
    settle: Callable[[str, Context], Awaitable[None]] | None = None
    prepare: Callable[[AsyncSession, list[M], Context], Awaitable[None]] | None = None
    finish: Callable[[AsyncSession, Context], Awaitable[None]] | None = None


AFTER_COMMIT: Final = "after_commit"


def after_commit(session: AsyncSession, action: Callable[[], Awaitable[Any]]) -> None:
    """Run `action` once `session`'s transaction has committed (a call to the outside
    world whose intent it recorded); the actions of a batch run side by side."""
    session.info.setdefault(AFTER_COMMIT, []).append(action)


class BatchedSubscriber(ConcurrentBetweenPartitionsSubscriber):
    """A saga subscriber whose records are fetched by a `BatchConsumer`: FastStream
    starts no consumer of its own for it, and it handles, one at a time, what the batch
    consumer hands it (in tests, what TestKafkaBroker delivers)."""

    __slots__ = ()

    async def start(self) -> None:
        await SubscriberUsecase.start(self)  # the handler's model, without a consumer
        self._post_start()

    async def stop(self) -> None:
        await SubscriberUsecase.stop(self)  # waits for the message in hand


_BATCHED: dict[int, tuple[BatchedSubscriber, Batched[Any]]] = {}


def in_batches(
    subscriber: Any,
    parse: Callable[[bytes], M],
    inbox: Callable[[M], tuple[uuid.UUID, str]] | None = None,
    *,
    key: Callable[[M], str] | None = None,
    settle: Callable[[str, Context], Awaitable[None]] | None = None,
    prepare: Callable[[AsyncSession, list[M], Context], Awaitable[None]] | None = None,
    finish: Callable[[AsyncSession, Context], Awaitable[None]] | None = None,
) -> Callable[[Callable[[M, Context], Step]], Callable[[M, Context], Step]]:
    """Decorates the step of `subscriber`'s messages: they are then handled in batches."""

    def register(step: Callable[[M, Context], Step]) -> Callable[[M, Context], Step]:
        if not isinstance(subscriber, ConcurrentBetweenPartitionsSubscriber):
            raise TypeError("in_batches: a subscriber made by saga_subscriber")
        # Same layout (no slots of its own): only start and stop change.
        subscriber.__class__ = BatchedSubscriber
        how = Batched(parse, step, inbox, key, settle, prepare, finish)
        _BATCHED[id(subscriber)] = (cast(BatchedSubscriber, subscriber), how)
        return step

    return register


def batched(subscribers: list[Any]) -> list[tuple[BatchedSubscriber, Batched[Any]]]:
    """Those of `subscribers` handled in batches, with how."""
    found = [_BATCHED.get(id(s)) for s in subscribers]
    return [entry for entry in found if entry is not None and entry[0] in subscribers]


class _StepFailed(Exception):
    """The step of the batch's message at `index` raised `error` (None: no step did)."""

    def __init__(self, index: int | None, error: Exception) -> None:
        super().__init__(index, error)
        self.index, self.error = index, error


@dataclass
class _Answer:
    """What the one-at-a-time path did with a record: FastStream's ack policy acks
    (commit) or gives it back (seek); the batch consumer commits and seeks itself."""

    given_back: bool = False

    async def commit(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    def seek(self, partition: Any, offset: int) -> None:
        self.given_back = True


class BatchConsumer:
    """One consumer group's records, fetched with aiokafka and handled in batches."""

    def __init__(
        self,
        subscriber: BatchedSubscriber,
        how: Batched[Any],
        sessions: async_sessionmaker[AsyncSession],
        context: Context,
        *,
        max_records: int,
        one_at_a_time: bool = False,
    ) -> None:
        self.subscriber, self.how, self.sessions = subscriber, how, sessions
        self.context = context
        self.max_records = max_records
        self.one_at_a_time = one_at_a_time
        self.group = str(subscriber.group_id)
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        sub = self.subscriber
        consumer = sub.builder(
            group_id=sub.group_id, client_id=sub.client_id, **sub._connection_args
        )
        consumer.subscribe(topics=sub.topic_names_for_subscribe)
        await consumer.start()
        self.consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name=f"batches {self.group}")

    async def stop(self) -> None:
        """The batch in hand is finished and committed; then the consumer leaves."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), FETCH_WAIT_MS / 1000 + 30)
            except TimeoutError:
                self._task.cancel()
            except Exception:  # the loop's own failure: logged there; stop all the same
                log.exception("%s: the batch loop had ended", self.group)
            await asyncio.gather(self._task, return_exceptions=True)
        if self.consumer is not None:
            await self.consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stopping:
            try:
                fetched = await consumer.getmany(
                    timeout_ms=FETCH_WAIT_MS, max_records=self.max_records
                )
            except ConsumerStoppedError:
                return
            except KafkaError as error:
                if now_and_then(f"fetch:{self.group}"):
                    log.error("%s cannot fetch (%r); trying again", self.group, error)
                await asyncio.sleep(1)
                continue
            if not fetched:
                continue
            handled = await asyncio.gather(
                *(self._partition(consumer, tp, records) for tp, records in fetched.items()),
                return_exceptions=True,
            )
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            failed = False
            for (tp, records), result in zip(fetched.items(), handled, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result  # cancelled: the service is stopping
                    # Never a reason to stop consuming: nothing of this partition's part
                    # of the fetch is committed, and it is read again from its first record.
                    log.error("%s: %s[%s] could not be handled (%r); it comes again",
                              self.group, tp.topic, tp.partition, result)  # fmt: skip
                    self._rewind(consumer, tp, records[0].offset)
                    failed = True
                elif result[1] is not None:
                    offsets[tp] = OffsetAndMetadata(result[1], "")
            if offsets:
                await self._commit(consumer, offsets)
            if failed:
                await asyncio.sleep(1)

    def _rewind(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        with contextlib.suppress(IllegalStateError, AssertionError):  # no longer ours
            consumer.seek(tp, offset)

    async def _commit(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as lost:
            # The partitions went to another member in a rebalance: it gets these records
            # again from the last commit, and the inbox skips what was done here.
            log.warning("%s: offsets not committed (%s); redelivered to the new owner",
                        self.group, type(lost).__name__)  # fmt: skip
        except KafkaError as error:
            log.warning("%s: offsets not committed (%r); the records come again", self.group,
                        error)  # fmt: skip

    async def _partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> tuple[TopicPartition, int | None]:
        """The offset to commit for `tp` after handling `records` (None: nothing done)."""
        where = (self.group, tp.topic, tp.partition)
        BATCH_SIZES.labels(tp.topic).observe(len(records))
        PROGRESS.started(*where, records[0].offset)
        pending = records
        while pending:
            done, bad = (0, False) if self.one_at_a_time else await self._batch(pending)
            CONSUMED.labels(tp.topic, "batch").inc(done)
            alone = pending[done : done + 1] if bad else pending[done:]
            for record in alone:
                PROGRESS.started(*where, record.offset)
                if not await self._one(record):
                    PROGRESS.given_back(*where)
                    first = record.offset == records[0].offset
                    try:
                        consumer.seek(tp, record.offset)
                    except (IllegalStateError, AssertionError) as gone:
                        # No longer ours (a rebalance): its new owner reads it again from
                        # the last commit; nothing of this fetch is committed here.
                        log.warning("%s: %s[%s] went to another member (%s)", self.group,
                                    tp.topic, tp.partition, type(gone).__name__)  # fmt: skip
                        return tp, None
                    return tp, (None if first else record.offset)
                CONSUMED.labels(tp.topic, "one").inc()
            pending = pending[done + len(alone) :]
        PROGRESS.finished(*where)
        return tp, records[-1].offset + 1

    async def _one(self, record: ConsumerRecord) -> bool:
        """`record` handled alone through the subscriber (and its middlewares: dead letters,
        their retries, metrics, tracing); False when given back, to be delivered again."""
        answer = _Answer()
        record.consumer = answer  # what FastStream acks with
        # A stopped subscriber takes nothing (FastStream returns at once): given back.
        if not self.subscriber.running:
            return False
        await self.subscriber.consume(record)
        return not answer.given_back

    async def _batch(self, records: list[ConsumerRecord]) -> tuple[int, bool]:
        """How many of `records`, from the first, were handled in batches, round after
        round, each in one transaction; and what of the next: True, it is a bad message
        (over the size limit, not parsed, or refused by its step for good: what a dead
        letter is for) to go alone while the rest go on in batches; False, a round failed
        otherwise (a database error, say): nothing of it stays, and the rest go one at a
        time, each retried as it always was."""
        parsed = []
        for record in records:
            value = record.value or b""
            if len(value) > MAX_MESSAGE_BYTES or not _json_content(record):
                break
            try:
                parsed.append((record, self.how.parse(value)))
            except Exception:  # refused alone, with its reason
                break
        done = 0
        for round_ in _rounds(parsed, self.how.key):
            failed = await self._round(round_)
            if failed is None:
                done += len(round_)
                continue
            index, error = failed
            if index is None or classify(error) is None:
                return done, False
            # The messages before the bad one did nothing (rolled back): they go again.
            if index and await self._round(round_[:index]) is not None:
                return done, False
            return done + index, True
        return done, done < len(records)

    async def _round(
        self, parsed: list[tuple[ConsumerRecord, Any]]
    ) -> tuple[int | None, Exception] | None:
        """None when `parsed` was handled in one transaction, its calls made after it; else
        the failure, with the index of the message whose step raised it, if one did."""
        how = self.how
        if how.key is not None and how.settle is not None:
            await asyncio.gather(*(how.settle(how.key(m), self.context) for _, m in parsed))
        try:
            async with self.sessions.begin() as session:
                await self._apply(session, parsed)
                actions = session.info.pop(AFTER_COMMIT, [])  # run only once committed
        except asyncio.CancelledError:
            raise
        except Exception as error:
            failed = error if isinstance(error, _StepFailed) else _StepFailed(None, error)
            if now_and_then(f"batch:{self.group}:{type(failed.error).__name__}"):
                log.warning("%s: a batch of %d failed (%s)", self.group, len(parsed),
                            type(failed.error).__name__)  # fmt: skip
            return failed.index, failed.error
        for failed_call in await asyncio.gather(*(a() for a in actions), return_exceptions=True):
            if isinstance(failed_call, Exception):
                # Its intent is recorded: the settler (or retrier) takes it over, as after
                # a crash mid-call.
                log.error("%s: a call after a batch failed (%r); left to the settler",
                          self.group, failed_call)  # fmt: skip
        return None

    async def _apply(self, session: AsyncSession, parsed: list[tuple[ConsumerRecord, Any]]) -> None:
        how = self.how
        todo = [(index, record, message) for index, (record, message) in enumerate(parsed)]
        if how.inbox is not None:
            keys = [how.inbox(message) for _, message in parsed]
            fresh = await first_deliveries(session, keys)
            todo = []
            for index, ((record, message), (event_id, message_type)) in enumerate(
                zip(parsed, keys, strict=True)
            ):
                if event_id in fresh:
                    fresh.discard(event_id)  # a repeat later in the batch is skipped too
                    todo.append((index, record, message))
                    continue
                with about_message(_headers(record), record.key):
                    log.info("%s %s already processed; redelivery skipped",
                             message_type, event_id)  # fmt: skip
        if how.prepare is not None:
            await how.prepare(session, [message for _, _, message in todo], self.context)
        rows: list[dict[str, Any]] = []
        for index, record, message in todo:
            with about_message(_headers(record), record.key):
                try:
                    outgoing = await how.step(message, self.context)(session)
                except Exception as error:
                    raise _StepFailed(index, error) from error
                rows += outbox.rows_for(outgoing)
        if how.finish is not None:
            await how.finish(session, self.context)
        await outbox.stage_rows(session, rows)


def _rounds(
    parsed: list[tuple[ConsumerRecord, Any]], key: Callable[[Any], str] | None
) -> list[list[tuple[ConsumerRecord, Any]]]:
    """`parsed` cut before each message whose key is already in its round."""
    if not parsed:
        return []
    if key is None:
        return [parsed]
    rounds: list[list[tuple[ConsumerRecord, Any]]] = [[]]
    keys: set[str] = set()
    for record, message in parsed:
        about = key(message)
        if about in keys:
            rounds.append([])
            keys.clear()
        keys.add(about)
        rounds[-1].append((record, message))
    return rounds


def _json_content(record: ConsumerRecord) -> bool:
    """Whether FastStream would read the record as JSON too: no content-type header, or a
    JSON one. Another (text/plain, say) makes FastStream hand its handler a string or
    bytes; such a record goes alone, to be refused as it always was."""
    for name, value in record.headers or ():
        if str(name).lower() == "content-type":
            return (value or b"").startswith(b"application/json")
    return True


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {
        str(name): (value or b"").decode(errors="replace") for name, value in record.headers or ()
    }


def parse_json_object(value: bytes) -> dict[str, Any]:
    """A JSON object, as FastStream hands a `dict` parameter."""
    body = json.loads(value)
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body


async def start_batch_consumers(
    subscribers: list[Any],
    sessions: async_sessionmaker[AsyncSession],
    context: Context,
    *,
    max_records: int,
    one_at_a_time: bool,
) -> list[BatchConsumer]:
    """A batch consumer for each of `subscribers` handled in batches, started."""
    consumers = [
        BatchConsumer(
            sub, how, sessions, context, max_records=max_records, one_at_a_time=one_at_a_time
        )
        for sub, how in batched(subscribers)
    ]
    started = time.monotonic()
    await asyncio.gather(*(c.start() for c in consumers))  # side by side: one rebalance
    log.debug("%d batch consumers started in %.1fs", len(consumers), time.monotonic() - started)
    return consumers
