"""A top-up's state machine: its states, the allowed moves, and the move an answer
of the carrier (or its silence) calls for under the retry policy.

    NEW, RETRYING, UNKNOWN  --applied---------------------------> APPLIED
                            --failed for good-------------------> FAILED(reason)
                            --unavailable, attempts left--------> RETRYING (send after backoff,
                                                                  and not before a Retry-After)
                            --unavailable, no attempts left-----> FAILED(retries_exhausted)
                            --timed out, status unanswered------> UNKNOWN (ask status(key))
                            --status not_found------------------> RETRYING (send now), or
                                                                  FAILED(retries_exhausted);
                                                                  UNKNOWN while the last send
                                                                  may still land (in_flight_s)
A NEW top-up left alone past the grace period (a crash between the carrier call and
its record) is treated as UNKNOWN: the carrier is asked before anything is sent. A
RETRYING one is UNKNOWN from the moment the retrier claims it to send it, for the same
reason: whoever takes it over from a retrier that died mid-call asks first.

An UNKNOWN top-up is never failed on a timer: it may have been applied, so it
waits for the carrier to say what happened. "Not among the line's orders" says only
that the carrier has not placed it *yet*: a send that timed out may still be working
its way through the carrier (a slow request is not a lost one). So the key is sent
again only once its last send is older than `in_flight_s`, longer than the carrier
takes to act on a request or give it up.
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
    # A top-up sent this recently may still be placed by the carrier: its absence from
    # the line's orders proves nothing yet. Longer than the carrier's own deadline for
    # a request (CARRIER_REQUEST_DEADLINE_S on the simulator).
    in_flight_s: float = 120.0
    interval_s: float = 0.5  # how often the retrier looks for due top-ups

    @property
    def in_flight(self) -> timedelta:
        return timedelta(seconds=self.in_flight_s)

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


def decide(
    outcome: Outcome, attempts: int, policy: RetryPolicy, since_sent: timedelta | None = None
) -> Move:
    """Where a top-up goes after `outcome`, `attempts` top-up calls having been sent, the
    last one `since_sent` ago (None: never sent, or too long ago to matter)."""
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
        case NotFound() if since_sent is not None and since_sent < policy.in_flight:
            wait, ago = policy.in_flight - since_sent, since_sent.total_seconds()
            message = f"not among the line's orders yet; sent {ago:.0f}s ago, may still be placed"
            return Move(TopUpStatus.UNKNOWN, retry_in=wait, message=message)
        case NotFound():
            # Nothing reached the carrier, and its last send can no longer land:
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
