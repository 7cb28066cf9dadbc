"""shared/late_answers.py: a consumer need not wait for the outside world; a slower
answer is still recorded, by a task of its own; too many calls out and it waits again;
the next command about a key waits for the call still out about it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from shared import late_answers
from shared.dead_letters import BusinessRuleViolation
from shared.late_answers import LateAnswers

Call = Callable[[], Coroutine[Any, Any, str]]
Record = Callable[[str], Coroutine[Any, Any, list[str]]]


def answered_after(seconds: float, recorded: list[str], name: str) -> tuple[Call, Record]:
    """A call answering `name` after `seconds`, and the record of its answer."""

    async def call() -> str:
        await asyncio.sleep(seconds)
        return name

    async def record(answer: str) -> list[str]:
        recorded.append(answer)
        return [answer]

    return call, record


def failing_to_record(error: Exception, tries: list[int]) -> tuple[Call, Record]:
    async def call() -> str:
        return "answer"

    async def record(_answer: str) -> list[str]:
        tries.append(1)
        raise error

    return call, record


async def settled(late: LateAnswers) -> None:
    for _ in range(300):
        if late.out == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("calls still out")


@pytest.fixture(autouse=True)
def quick_record_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(late_answers, "RECORD_RETRY_DELAYS_S", (0.01, 0.01))


async def test_an_answer_within_the_patience_is_returned_to_the_consumer() -> None:
    late, recorded = LateAnswers(0.5, 4, "test"), list[str]()
    assert await late.answer("k", *answered_after(0.0, recorded, "quick")) == ["quick"]
    assert (recorded, late.out) == (["quick"], 0)


async def test_a_slower_answer_frees_the_consumer_and_is_recorded_when_it_comes() -> None:
    late, recorded = LateAnswers(0.02, 4, "test"), list[str]()
    assert await late.answer("k", *answered_after(0.2, recorded, "slow")) == []
    assert (recorded, late.out) == ([], 1)
    await settled(late)
    assert recorded == ["slow"]


async def test_with_no_patience_the_consumer_never_waits() -> None:
    late, recorded = LateAnswers(0.0, 4, "test"), list[str]()
    assert await late.answer("k", *answered_after(0.0, recorded, "instant")) == []
    assert (recorded, late.out) == ([], 1)
    await settled(late)
    assert recorded == ["instant"]


async def test_with_too_many_calls_out_the_consumer_waits_for_room_first() -> None:
    late, recorded = LateAnswers(0.02, 1, "test"), list[str]()
    assert await late.answer("a", *answered_after(0.2, recorded, "first")) == []
    assert await late.answer("b", *answered_after(0.1, recorded, "second")) == []
    assert recorded == ["first"]  # answered before the second could go out
    await settled(late)
    assert recorded == ["first", "second"]


async def test_however_many_calls_a_batch_makes_side_by_side_no_more_are_out_at_once() -> None:
    late, most, out = LateAnswers(0.0, 3, "test"), list[int](), list[str]()

    def counted(key: str) -> tuple[Call, Record]:
        async def call() -> str:
            out.append(key)
            most.append(len(out))
            await asyncio.sleep(0.01)
            out.remove(key)
            return key

        async def record(answer: str) -> list[str]:
            return [answer]

        return call, record

    await asyncio.gather(*(late.answer(f"k{i}", *counted(f"k{i}")) for i in range(12)))
    await settled(late)
    assert len(most) == 12
    assert max(most) == 3


async def test_waited_for_in_full_a_failure_to_record_is_the_messages() -> None:
    tries: list[int] = []
    with pytest.raises(RuntimeError, match="the database is gone"):
        await LateAnswers(None, 4, "test").answer(
            "k", *failing_to_record(RuntimeError("the database is gone"), tries)
        )
    assert tries == [1]  # the message is retried, not the record


async def test_a_late_answer_failing_to_be_recorded_for_a_moment_is_recorded_again() -> None:
    late, recorded, tries = LateAnswers(0.0, 4, "test"), list[str](), list[int]()

    async def call() -> str:
        return "captured"

    async def record(answer: str) -> list[str]:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionResetError("the database went away for a moment")
        recorded.append(answer)
        return [answer]

    await late.answer("k", call, record)
    await settled(late)
    assert (recorded, len(tries)) == (["captured"], 2)


async def test_a_late_answer_that_cannot_be_recorded_is_logged_and_left_to_the_settler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    late, tries = LateAnswers(0.0, 4, "test"), list[int]()
    refused = BusinessRuleViolation("the payment is not ours")
    assert await late.answer("k", *failing_to_record(refused, tries)) == []
    with caplog.at_level(logging.ERROR):
        await settled(late)
    assert tries == [1]  # not a transient failure: not tried again
    assert "left to the settler" in caplog.text
    assert "the payment is not ours" in caplog.text


async def test_at_shutdown_calls_out_get_a_moment_then_are_cancelled() -> None:
    late, recorded = LateAnswers(0.0, 4, "test"), list[str]()
    await late.answer("a", *answered_after(0.05, recorded, "soon"))
    await late.answer("b", *answered_after(30, recorded, "never"))
    await late.close(wait_s=0.5)
    assert (recorded, late.out) == (["soon"], 0)


async def test_the_next_command_about_a_key_waits_for_the_call_still_out_about_it() -> None:
    late, recorded = LateAnswers(0.0, 4, "test"), list[str]()
    await late.answer("order-1", *answered_after(0.1, recorded, "charged"))
    await late.settled("order-2")  # another key: nothing to wait for
    assert recorded == []
    await late.settled("order-1")
    assert (recorded, late.out) == (["charged"], 0)


async def test_a_second_call_about_a_key_with_one_out_is_waited_for_in_full() -> None:
    late, recorded = LateAnswers(0.0, 4, "test"), list[str]()
    assert await late.answer("order-1", *answered_after(0.1, recorded, "charge")) == []
    assert await late.answer("order-1", *answered_after(0.0, recorded, "again")) == ["again"]
    await settled(late)


async def test_a_failure_within_the_patience_is_the_messages_and_not_logged_as_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    late, tries = LateAnswers(0.5, 4, "test"), list[int]()
    refused = BusinessRuleViolation("the payment is not ours")
    with caplog.at_level(logging.ERROR), pytest.raises(BusinessRuleViolation):
        await late.answer("k", *failing_to_record(refused, tries))
    await asyncio.sleep(0)
    assert (late.out, caplog.text) == (0, "")


async def test_while_stopping_answers_are_waited_for_and_none_is_left_behind() -> None:
    late, recorded = LateAnswers(0.0, 4, "test"), list[str]()
    await late.answer("a", *answered_after(0.05, recorded, "before"))
    closing = asyncio.create_task(late.close(wait_s=2))
    await asyncio.sleep(0)
    # A consumer still taking messages while the service stops: waited for in full.
    assert await late.answer("b", *answered_after(0.05, recorded, "during")) == ["during"]
    await closing
    assert (sorted(recorded), late.out) == (["before", "during"], 0)


async def test_the_calls_client_is_closed_only_after_the_calls_out_are_done() -> None:
    late, recorded, order = LateAnswers(0.0, 4, "test"), list[str](), list[str]()

    async def close_client() -> None:
        order.append(f"client closed after {recorded}")

    await late.answer("a", *answered_after(0.05, recorded, "answered"))
    stopping = asyncio.create_task(late.closing(2, close_client)(None))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    stopping.cancel()  # the service stops
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert order == ["client closed after ['answered']"]
