"""A top-up's state machine: its states, the allowed moves, and the move an answer
of the carrier (or its silence) calls for under the retry policy.

    NEW, RETRYING, UNKNOWN  --applied---------------------------> APPLIED
                            --failed for good-------------------> FAILED(reason)
                            --unavailable, attempts left--------> RETRYING (send after backoff,
                                                                  and not before a Retry-After)
                            --unavailable, no attempts left-----> FAILED(retries_exhausted)
                            --timed out, status unanswered------> UNKNOWN (ask status(key))
                            --status not_found------------------> RETRYING (send now), or
                                                                  FAILED(retries_exhausted)
A NEW top-up left alone past the grace period (a crash between the carrier call and
its record) is treated as UNKNOWN: the carrier is asked before anything is sent.

An UNKNOWN top-up is never failed on a timer: it may have been applied, so it
waits for the carrier to say what happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from services.provisioning.carrier import Applied, Failed, NotFound


class TopUpStatus(StrEnum):
    NEW = "NEW"
    RETRYING = "RETRYING"
    UNKNOWN = "UNKNOWN"
    APPLIED = "APPLIED"
    FAILED = "FAILED"


_OPEN = frozenset(
    {TopUpStatus.RETRYING, TopUpStatus.UNKNOWN, TopUpStatus.APPLIED, TopUpStatus.FAILED}
)
TRANSITIONS: dict[TopUpStatus, frozenset[TopUpStatus]] = {
    TopUpStatus.NEW: _OPEN,
    TopUpStatus.RETRYING: _OPEN,
    TopUpStatus.UNKNOWN: _OPEN,
    TopUpStatus.APPLIED: frozenset(),
    TopUpStatus.FAILED: frozenset(),
}
UNSETTLED = (TopUpStatus.NEW, TopUpStatus.RETRYING, TopUpStatus.UNKNOWN)


def can_transition(current: TopUpStatus, target: TopUpStatus) -> bool:
    return target in TRANSITIONS[current]


@dataclass(frozen=True)
class Unavailable:
    """The carrier refused for now and did nothing; not again before `retry_after_s`."""

    message: str
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class Unknown:
    """Nobody knows whether the carrier applied it (a timeout, or status unanswered);
    the carrier is not asked again before `retry_after_s` when it said so (429)."""

    message: str
    retry_after_s: float = 0.0


Outcome = Applied | Failed | NotFound | Unavailable | Unknown


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    grace_s: float = 30.0  # a call in flight this long is presumed lost
    interval_s: float = 0.5  # how often the retrier looks for due top-ups

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base ..."""
        if attempts <= 0:
            return timedelta(0)
        return timedelta(seconds=min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1)))


@dataclass(frozen=True)
class Move:
    status: TopUpStatus
    retry_in: timedelta | None = None  # when to look again, for an unsettled status
    reason: str | None = None  # why it failed, for a FAILED one
    message: str | None = None


def decide(outcome: Outcome, attempts: int, policy: RetryPolicy) -> Move:
    """Where a top-up goes after `outcome`, `attempts` top-up calls having been sent."""
    match outcome:
        case Applied():
            return Move(TopUpStatus.APPLIED)
        case Failed(permanent=True, reason=reason, message=message):
            return Move(TopUpStatus.FAILED, reason=reason, message=message)
        case Failed(message=message):
            return _retry_or_give_up(attempts, policy, message, policy.backoff(attempts))
        case Unavailable(message=message, retry_after_s=retry_after_s):
            wait = max(policy.backoff(attempts), timedelta(seconds=retry_after_s))
            return _retry_or_give_up(attempts, policy, message, wait)
        case NotFound():
            # Nothing reached the carrier, and we already waited before asking:
            # send the same key again at once.
            return _retry_or_give_up(
                attempts, policy, "the carrier never received it", wait=timedelta(0)
            )
        case Unknown(message=message, retry_after_s=retry_after_s):
            wait = max(policy.backoff(max(attempts, 1)), timedelta(seconds=retry_after_s))
            return Move(TopUpStatus.UNKNOWN, retry_in=wait, message=message)
    raise AssertionError(f"unexpected outcome {outcome!r}")  # pragma: no cover


def _retry_or_give_up(attempts: int, policy: RetryPolicy, message: str, wait: timedelta) -> Move:
    if attempts >= policy.max_attempts:
        return Move(
            TopUpStatus.FAILED,
            reason="retries_exhausted",
            message=f"no top-up after {attempts} attempts; last: {message}",
        )
    return Move(TopUpStatus.RETRYING, retry_in=wait, message=message)
