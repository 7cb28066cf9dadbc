"""Answers from the outside world recorded together: one transaction for those that came
while the one before was committing.

Each call a consumer's batch makes (shared/late_answers.py) ends with a transaction that
records its answer and stages the messages it calls for. Recorded one by one, a batch of
answers costs a transaction each. Here, the first answer starts a transaction of its own;
the ones that come while it runs wait, and the next transaction takes them all, in the
order they came: at low load, one answer per transaction (no added wait); under load,
as many as came meanwhile (at most GROUP_MOST). If a group's transaction fails, nothing
of it stays and each answer is tried again alone, in a transaction of its own, and gets
its own outcome (its failure is its own, as before).

One group per session factory (`grouped(sessions)`), so one process's records of one
database form one queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import outbox
from shared.kafka import Outgoing
from shared.logs import now_and_then

log = logging.getLogger(__name__)

T = TypeVar("T")
GROUP_MOST: Final = 200

Write = Callable[[AsyncSession], Awaitable[list[Outgoing]]]


class GroupedRecords:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._queue: list[tuple[Write, asyncio.Future[list[Outgoing]]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def record(self, write: Write) -> list[Outgoing]:
        """`write`'s messages, once it and the messages it returned are committed."""
        future: asyncio.Future[list[Outgoing]] = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain(), name="grouped records")
        return await asyncio.shield(future)  # a cancelled waiter leaves its record be

    async def _drain(self) -> None:
        while self._queue:
            group, self._queue = self._queue[:GROUP_MOST], self._queue[GROUP_MOST:]
            try:
                async with self.sessions.begin() as session:
                    written = [await write(session) for write, _ in group]
                    await outbox.stage_rows(session, outbox.rows_for(m for w in written for m in w))
            except Exception as error:
                if len(group) > 1 and now_and_then(f"grouped:{type(error).__name__}"):
                    log.warning("%d answers not recorded together (%s); each alone",
                                len(group), type(error).__name__)  # fmt: skip
                await asyncio.gather(*(self._alone(write, future) for write, future in group))
                continue
            for (_, future), messages in zip(group, written, strict=True):
                if not future.done():
                    future.set_result(messages)

    async def _alone(self, write: Write, future: asyncio.Future[list[Outgoing]]) -> None:
        try:
            async with self.sessions.begin() as session:
                messages = await write(session)
                await outbox.stage(session, messages)
        except Exception as error:
            if not future.done():
                future.set_exception(error)
            return
        if not future.done():
            future.set_result(messages)


_GROUPS: WeakKeyDictionary[Any, GroupedRecords] = WeakKeyDictionary()


def grouped(sessions: async_sessionmaker[AsyncSession]) -> GroupedRecords:
    """The group of `sessions`' database in this process."""
    group = _GROUPS.get(sessions)
    if group is None:
        group = _GROUPS[sessions] = GroupedRecords(sessions)
    return group
