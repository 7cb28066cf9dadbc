"""/health tells when the outside world stops answering: every call to the payment
provider (or the carrier) unanswered for OUTSIDE_FAILING_AFTER_S makes the service
degraded, in words and in a gauge; one answer, a decline included, clears it."""

from __future__ import annotations

import time

import pytest

from services.payments import payments
from services.payments.provider import ProviderResult, ProviderUnavailable
from shared.progress import OUTSIDE_FAILING_AFTER_S, Progress, ProgressCollector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    ticking = Clock()
    monkeypatch.setattr(time, "monotonic", ticking)
    return ticking


def test_a_party_unanswered_past_the_threshold_degrades_health_until_it_answers(
    clock: Clock,
) -> None:
    watched = Progress()
    watched.outside_failed("the carrier", ConnectionError("refused"))
    clock.now += OUTSIDE_FAILING_AFTER_S - 1
    watched.outside_failed("the carrier", TimeoutError("no answer in 5s"))
    assert watched.problems() == [], "a short outage is not a problem yet"
    clock.now += 2
    [problem] = watched.problems()
    assert problem.startswith("the carrier unanswered for 31s")
    assert "TimeoutError: no answer in 5s" in problem, "the latest reason"
    collected = ProgressCollector(watched).collect()
    [gauge] = [m for m in collected if m.name == "topup_outside_unanswered_seconds"]
    assert [(s.labels, s.value) for s in gauge.samples] == [({"party": "the carrier"}, 31.0)]
    watched.outside_answered("the carrier")
    assert watched.problems() == []


async def test_payments_counts_an_unreachable_provider_and_forgets_it_once_it_answers(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = Progress()
    monkeypatch.setattr(payments, "PROGRESS", watched)

    async def unreachable() -> ProviderResult:
        raise ProviderUnavailable("Stripe could not be reached")

    async def declines() -> ProviderResult:
        return ProviderResult("declined", "pi_1", "insufficient_funds", "No funds.")

    await payments._ask(unreachable())
    clock.now += OUTSIDE_FAILING_AFTER_S
    assert [p.split(":")[0] for p in watched.problems()] == [
        f"{payments.PROVIDER} unanswered for {OUTSIDE_FAILING_AFTER_S:.0f}s"
    ]
    await payments._ask(declines())  # a decline is an answer
    assert watched.problems() == []
