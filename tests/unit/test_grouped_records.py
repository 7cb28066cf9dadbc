"""Answers recorded together (shared/grouped_records.py): those that come while a
transaction commits share the next one; a group that fails is tried one by one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orders.db import metadata, rejected_requests
from shared.events import order_id_for
from shared.grouped_records import GroupedRecords
from tests.unit.harness import sqlite_sessions


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sqlite_sessions(tmp_path / "grouped.db", metadata) as made:
        yield made


def writing(request_id: str, sessions_seen: list[int], fail: bool = False) -> Any:
    async def write(session: AsyncSession) -> list[Any]:
        sessions_seen.append(id(session))
        if fail:
            raise ValueError(f"{request_id} cannot be recorded")
        await session.execute(
            insert(rejected_requests).values(
                request_id=request_id, order_id=order_id_for(request_id), iccid="8944",
                reason="r", message="m", at=func.now(),
            )
        )  # fmt: skip
        return []

    return write


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return sorted(await session.scalars(select(rejected_requests.c.request_id)))


async def test_answers_that_come_while_one_commits_are_recorded_together(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    group, seen = GroupedRecords(sessions), list[int]()
    first = asyncio.create_task(group.record(writing("a", seen)))
    await asyncio.sleep(0)  # the first transaction has started
    await asyncio.gather(first, *(group.record(writing(r, seen)) for r in "bcde"))
    assert await rows(sessions) == ["a", "b", "c", "d", "e"]
    assert len(set(seen)) == 2  # "a" alone, then the four that came meanwhile together
    assert len({*seen[1:]}) == 1


async def test_a_failing_answer_fails_alone_and_the_others_of_its_group_are_recorded(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    group, seen = GroupedRecords(sessions), list[int]()
    outcomes = await asyncio.gather(
        group.record(writing("a", seen)),
        group.record(writing("b", seen, fail=True)),
        group.record(writing("c", seen)),
        return_exceptions=True,
    )
    assert outcomes[0] == []
    assert outcomes[2] == []
    assert isinstance(outcomes[1], ValueError)
    assert await rows(sessions) == ["a", "c"]
