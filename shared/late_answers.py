"""Calls to the outside world that outlive the message that made them.

A consumer handles a partition's messages one at a time, in order. Were it to wait for
the payment provider or the carrier on every message, each partition would move at the
pace of their answers (and a lost answer is waited out for the client's whole timeout):
with a few partitions, a slow provider or a few lost answers a second stall a service,
and its backlog outgrows every deadline (the fault suite showed payments falling 100 s
behind). So once the first transaction has recorded the intent, the call and the
transaction that records its answer (through the outbox) run in a task of their own,
and the consumer moves on to its next message after `OUTSIDE_PATIENCE_S` at most
(default 0: at once).

Safe because the intent is recorded under its idempotency key first: a process that dies
with calls still out leaves rows that the settler (payments) or the retrier
(provisioning) takes over after their grace period, as after any crash mid-call, and a
command about the same payment or top-up (a repeat, a refund after its charge) first
waits for the call still out about it in this process, so one key's commands are
still handled in their order, each seeing what the one before did. At most
`OUTSIDE_CALLS_AT_MOST` calls are out at once; beyond, the consumer waits for room
(backpressure, not an unbounded pile of tasks or of requests to the outside world).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.dead_letters import classify
from shared.metrics import LATE_ANSWERS, OUTSIDE_CALLS_OUT
from shared.worker import BackgroundTask, Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

RECORD_RETRY_DELAYS_S: Final = (0.1, 0.3, 1.0, 3.0)


class LateAnswerSettings(BaseSettings):
    """The two settings of the services that call the outside world."""

    # How long a consumer waits for the provider's or the carrier's answer before it
    # moves on to its next message (0: not at all; the answer is recorded when it comes).
    outside_patience_s: float = Field(default=0.0, ge=0.0)
    outside_calls_at_most: int = Field(default=64, ge=1)


class LateAnswers:
    """Where calls that outlived their message finish; one per service process."""

    def __init__(self, patience_s: float | None, at_most: int, service: str) -> None:
        """`patience_s` None: every answer is waited for in full."""
        self._patience_s = patience_s
        self._at_most = at_most
        self._service = service
        self._out: dict[str, asyncio.Task[Any]] = {}  # by the key the call is about
        self._detached: set[asyncio.Task[Any]] = set()  # those the consumer left behind
        self._closing = False

    @classmethod
    def of(cls, settings: LateAnswerSettings, service: str) -> LateAnswers:
        return cls(settings.outside_patience_s, settings.outside_calls_at_most, service)

    @property
    def out(self) -> int:
        return len(self._out)

    async def answer(
        self,
        key: str,
        call: Callable[[], Coroutine[Any, Any, R]],
        record: Callable[[R], Coroutine[Any, Any, list[T]]],
    ) -> list[T]:
        """`record(await call())`: a call about `key` and the record of its answer, whose
        result is returned when it is done within the patience; else [] at once, while
        it goes on and records its answer on its own (a record that fails for a moment,
        a database lock say, is tried again). Waited for in full (its failure the
        message's) when patience is None, the service is stopping, or one about the same
        key is out (a caller that did not wait for `settled(key)`). While
        OUTSIDE_CALLS_AT_MOST calls are out it first waits for one of them to finish: never
        more out at once, however many calls a batch makes side by side."""
        if self._patience_s is None or self._closing or key in self._out:
            return await record(await call())
        while len(self._out) >= self._at_most:
            # Backpressure: wait for room (a batch's calls, side by side, wait here too).
            await asyncio.wait(set(self._out.values()), return_when=asyncio.FIRST_COMPLETED)
            if self._closing or key in self._out:
                return await record(await call())
        task = asyncio.create_task(_recorded(await_call=call, record=record))
        self._out[key] = task  # a strong reference while it runs, whatever befalls us
        task.add_done_callback(lambda finished: self._finished(key, finished))
        if self._patience_s > 0:
            done, _ = await asyncio.wait({task}, timeout=self._patience_s)
            if task in done:
                return task.result()
        self._detached.add(task)
        LATE_ANSWERS.labels(self._service).inc()
        OUTSIDE_CALLS_OUT.labels(self._service).set(len(self._out))
        return []

    async def settled(self, key: str) -> None:
        """Once the call still out about `key` in this process, if any, has recorded its
        answer (or failed to): the next command about it sees what it did."""
        task = self._out.get(key)
        if task is not None:
            await asyncio.wait({task})  # never cancels it, even if this wait is

    def _finished(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._out.get(key) is task:
            del self._out[key]
        OUTSIDE_CALLS_OUT.labels(self._service).set(len(self._out))
        detached = task in self._detached
        self._detached.discard(task)
        failure = None if task.cancelled() else task.exception()  # always retrieved
        if failure is not None and not detached:
            # Within the patience its failure is the message's; unless the consumer was
            # stopped while it waited: then nobody else will say it.
            log.debug("a call about %s failed: %s", key, type(failure).__name__)
        elif failure is not None:
            # The row stays open: the settler or the retrier takes it over after its grace.
            log.error(
                "a late answer could not be recorded (%s: %s); left to the settler",
                type(failure).__name__,
                failure,
            )

    async def close(self, wait_s: float) -> None:
        """At shutdown: from now on every answer is waited for in full (the consumers may
        still be taking messages), and the calls out get `wait_s` in all to finish, then
        are cancelled (their rows are taken over after the grace period, as after a
        crash)."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self._out and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._out.values()), timeout=left)
        pending = list(self._out.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def closing(self, wait_s: float, *then: Callable[[], Awaitable[None]]) -> BackgroundTask:
        """A background task for the service: waits until it stops, closes, then runs
        `then` in order (closing the client the calls use, say: not before)."""

        async def close_late_answers(_runtime: Runtime) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await self.close(wait_s)
                for step in then:
                    await step()

        return close_late_answers


async def _recorded(
    await_call: Callable[[], Coroutine[Any, Any, R]],
    record: Callable[[R], Coroutine[Any, Any, list[T]]],
) -> list[T]:
    """The call's answer, recorded; a transient failure to record it (what a consumer
    would retry: shared/dead_letters.py `classify`) is tried again, backing off."""
    answer = await await_call()
    for delay in (*RECORD_RETRY_DELAYS_S, None):
        try:
            return await record(answer)
        except Exception as failed:
            if delay is None or classify(failed) is not None:
                raise
            log.warning("recording a late answer failed (%r); again in %.1fs", failed, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover


@dataclass(frozen=True)
class OutsideCall(Generic[R, T]):
    """A call to the outside world that a transaction asked for: made once it has
    committed (its intent recorded under `key`), its answer recorded by `record` in a
    transaction of its own. A consumer's batch (shared/batches.py) makes its calls side
    by side; a message handled alone makes its one."""

    key: str
    call: Callable[[], Coroutine[Any, Any, R]]
    record: Callable[[R], Coroutine[Any, Any, list[T]]]

    async def made(self, late: LateAnswers) -> list[T]:
        return await late.answer(self.key, self.call, self.record)


INLINE = LateAnswers(None, 1, "inline")
"""Every answer waited for in full, as a test or a tool calling the domain wants."""
