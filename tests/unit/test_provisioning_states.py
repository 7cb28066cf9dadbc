from datetime import timedelta

import pytest

from services.provisioning.carrier import Applied, Failed, NotFound
from services.provisioning.topup_states import (
    Move,
    Outcome,
    RetryPolicy,
    TopUpStatus,
    Unavailable,
    Unknown,
    can_transition,
    decide,
)

POLICY = RetryPolicy(max_attempts=5, backoff_base_s=1.0, backoff_max_s=5.0)
S = TopUpStatus


@pytest.mark.parametrize(("attempts", "seconds"), [(0, 0), (1, 1), (2, 2), (3, 4), (4, 5), (10, 5)])
def test_the_backoff_doubles_after_each_attempt_up_to_its_maximum(
    attempts: int, seconds: float
) -> None:
    assert POLICY.backoff(attempts) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("outcome", "attempts", "expected"),
    [
        pytest.param(Applied("r1"), 1, Move(S.APPLIED), id="applied"),
        pytest.param(
            Failed(True, "line_suspended", "suspended"), 1,
            Move(S.FAILED, reason="line_suspended", message="suspended"),
            id="permanent-failure-fails-with-the-carriers-reason",
        ),
        pytest.param(
            Unavailable("503"), 2, Move(S.RETRYING, timedelta(seconds=2), message="503"),
            id="unavailable-is-retried-after-a-backoff",
        ),
        pytest.param(
            Failed(False, "busy", "try later"), 1,
            Move(S.RETRYING, timedelta(seconds=1), message="try later"),
            id="a-failure-that-is-not-permanent-is-retried",
        ),
        pytest.param(
            Unknown("timed out"), 1, Move(S.UNKNOWN, timedelta(seconds=1), message="timed out"),
            id="a-timeout-leaves-it-unknown",
        ),
        pytest.param(
            Unknown("no status"), 0, Move(S.UNKNOWN, timedelta(seconds=1), message="no status"),
            id="a-status-unanswered-before-any-attempt-still-waits",
        ),
        pytest.param(
            NotFound(), 1,
            Move(S.RETRYING, timedelta(0), message="the carrier never received it"),
            id="not-found-is-sent-again-at-once",
        ),
    ],
)  # fmt: skip
def test_an_outcome_moves_a_top_up(outcome: Outcome, attempts: int, expected: Move) -> None:
    assert decide(outcome, attempts, POLICY) == expected


@pytest.mark.parametrize(
    "outcome", [Unavailable("503"), NotFound(), Failed(False, "busy", "try later")]
)
def test_the_last_attempt_failing_exhausts_the_retries(outcome: Outcome) -> None:
    move = decide(outcome, POLICY.max_attempts, POLICY)
    assert move.status is S.FAILED
    assert move.reason == "retries_exhausted"
    assert move.message is not None
    assert move.message.startswith("no top-up after 5 attempts")


def test_an_unknown_top_up_is_never_failed_for_running_out_of_attempts() -> None:
    assert decide(Unknown("timed out"), 99, POLICY).status is S.UNKNOWN


@pytest.mark.parametrize("settled", [S.APPLIED, S.FAILED])
def test_a_settled_top_up_never_moves_again(settled: TopUpStatus) -> None:
    assert not any(can_transition(settled, target) for target in TopUpStatus)


@pytest.mark.parametrize("unsettled", [S.NEW, S.RETRYING, S.UNKNOWN])
def test_nothing_goes_back_to_new(unsettled: TopUpStatus) -> None:
    assert not can_transition(unsettled, S.NEW)
    assert can_transition(unsettled, S.APPLIED)


@pytest.mark.parametrize(
    ("outcome", "attempts", "wait_s"),
    [
        pytest.param(Unavailable("429", retry_after_s=30), 1, 30, id="retry-after-beyond-backoff"),
        pytest.param(Unavailable("429", retry_after_s=0.5), 3, 4, id="backoff-beyond-retry-after"),
        pytest.param(Unknown("429 on status", retry_after_s=12), 1, 12, id="status-rate-limited"),
    ],
)
def test_a_carrier_that_says_retry_after_is_not_called_again_before(
    outcome: Outcome, attempts: int, wait_s: float
) -> None:
    move = decide(outcome, attempts, POLICY)
    assert move.retry_in == timedelta(seconds=wait_s)


def test_a_key_not_found_while_its_last_send_may_still_land_is_not_sent_again_yet() -> None:
    policy = RetryPolicy(in_flight_s=60)
    waiting = decide(NotFound(), 1, policy, since_sent=timedelta(seconds=15))
    assert (waiting.status, waiting.retry_in) == (S.UNKNOWN, timedelta(seconds=45))
    assert "may still be placed" in str(waiting.message)
    resent = decide(NotFound(), 1, policy, since_sent=timedelta(seconds=60))
    assert (resent.status, resent.retry_in) == (S.RETRYING, timedelta(0))
