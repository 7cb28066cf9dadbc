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
repeated command finds the row and waits for the same answer. At most
`OUTSIDE_CALLS_AT_MOST` calls are out at once; beyond, the consumer waits for its
answer as it always did (backpressure, not an unbounded pile of tasks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.metrics import LATE_ANSWERS, OUTSIDE_CALLS_OUT
from shared.worker import BackgroundTask, Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")


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
        self._out: set[asyncio.Task[Any]] = set()

    @classmethod
    def of(cls, settings: LateAnswerSettings, service: str) -> LateAnswers:
        return cls(settings.outside_patience_s, settings.outside_calls_at_most, service)

    @property
    def out(self) -> int:
        return len(self._out)

    async def answer(self, call_and_record: Callable[[], Coroutine[Any, Any, list[T]]]) -> list[T]:
        """What `call_and_record` returns when it is done within the patience; else []
        at once, while it goes on and records its answer on its own. Waited for in full
        (its failure the message's) when patience is None or too many calls are out."""
        if self._patience_s is None or len(self._out) >= self._at_most:
            return await call_and_record()
        task: asyncio.Task[list[T]] = asyncio.create_task(call_and_record())
        if self._patience_s > 0:
            done, _ = await asyncio.wait({task}, timeout=self._patience_s)
            if task in done:
                return task.result()
        self._out.add(task)  # a strong reference while it runs
        task.add_done_callback(self._finished)
        LATE_ANSWERS.labels(self._service).inc()
        OUTSIDE_CALLS_OUT.labels(self._service).set(len(self._out))
        return []

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._out.discard(task)
        OUTSIDE_CALLS_OUT.labels(self._service).set(len(self._out))
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            # The row stays open: the settler or the retrier takes it over after its grace.
            log.error(
                "a late answer could not be recorded (%s: %s); left to the settler",
                type(failure).__name__,
                failure,
            )

    async def close(self, wait_s: float) -> None:
        """At shutdown: the calls still out get `wait_s` to finish, then are cancelled
        (their rows are taken over after the grace period, as after a crash)."""
        if not self._out:
            return
        _, pending = await asyncio.wait(set(self._out), timeout=wait_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def closing(self, wait_s: float) -> BackgroundTask:
        """A background task for the service: waits until it stops, then closes."""

        async def close_late_answers(_runtime: Runtime) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await self.close(wait_s)

        return close_late_answers


INLINE = LateAnswers(None, 1, "inline")
"""Every answer waited for in full, as a test or a tool calling the domain wants."""
