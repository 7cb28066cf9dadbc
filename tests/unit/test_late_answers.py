"""shared/late_answers.py: a consumer waits for the outside world only so long; a slower
answer is still recorded, by a task of its own; too many calls out and it waits again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from shared.late_answers import LateAnswers


def answered_after(
    seconds: float, recorded: list[str], name: str
) -> Callable[[], Coroutine[Any, Any, list[str]]]:
    async def call_and_record() -> list[str]:
        await asyncio.sleep(seconds)
        recorded.append(name)
        return [name]

    return call_and_record


async def settled(late: LateAnswers) -> None:
    for _ in range(200):
        if late.out == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("calls still out")


async def test_an_answer_within_the_patience_is_returned_to_the_consumer() -> None:
    late, recorded = LateAnswers(0.5, 4, "test"), list[str]()
    assert await late.answer(answered_after(0.0, recorded, "quick")) == ["quick"]
    assert (recorded, late.out) == (["quick"], 0)


async def test_a_slower_answer_frees_the_consumer_and_is_recorded_when_it_comes() -> None:
    late, recorded = LateAnswers(0.02, 4, "test"), list[str]()
    assert await late.answer(answered_after(0.2, recorded, "slow")) == []
    assert (recorded, late.out) == ([], 1)
    await settled(late)
    assert recorded == ["slow"]


async def test_with_no_patience_the_consumer_never_waits() -> None:
    late, recorded = LateAnswers(0.0, 4, "test"), list[str]()
    assert await late.answer(answered_after(0.0, recorded, "instant")) == []
    assert (recorded, late.out) == ([], 1)
    await settled(late)
    assert recorded == ["instant"]


async def test_with_too_many_calls_out_the_consumer_waits_for_the_answer_again() -> None:
    late, recorded = LateAnswers(0.02, 1, "test"), list[str]()
    assert await late.answer(answered_after(0.2, recorded, "first")) == []
    assert await late.answer(answered_after(0.1, recorded, "second")) == ["second"]
    await settled(late)
    assert recorded == ["second", "first"]


async def test_without_patience_an_answer_is_waited_for_and_its_failure_is_the_messages() -> None:
    async def failing() -> list[str]:
        await asyncio.sleep(0.05)
        raise RuntimeError("the database is gone")

    with pytest.raises(RuntimeError, match="database is gone"):
        await LateAnswers(None, 4, "test").answer(failing)


async def test_a_late_answer_that_cannot_be_recorded_is_logged_and_left_to_the_settler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing() -> list[str]:
        await asyncio.sleep(0.05)
        raise RuntimeError("the database is gone")

    late = LateAnswers(0.01, 4, "test")
    assert await late.answer(failing) == []
    with caplog.at_level(logging.ERROR):
        await settled(late)
    assert "left to the settler" in caplog.text
    assert "the database is gone" in caplog.text


async def test_at_shutdown_calls_out_get_a_moment_then_are_cancelled() -> None:
    late, recorded = LateAnswers(0.01, 4, "test"), list[str]()
    await late.answer(answered_after(0.05, recorded, "soon"))
    await late.answer(answered_after(30, recorded, "never"))
    await late.close(wait_s=0.5)
    assert (recorded, late.out) == (["soon"], 0)
