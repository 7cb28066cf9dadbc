"""The carrier: the outside system that actually adds data to a line.

Every top-up names our idempotency key (`f"{order_id}:topup"`). The carrier's API has no
idempotency key of its own (services/provisioning/partner_api.py carries ours in the
order's description), so a key is applied at most once only because we never send it
again before the carrier has told us it does not know it. A call either answers
(`Applied`, `Failed`) or raises:

- `CarrierUnavailable`: refused before doing anything (busy, 503, 429, connection
  refused); safe to send again, not before `retry_after_s` when the carrier said so.
- `CarrierTimeout`: no answer in time; the top-up may or may not have been applied.
  Only `status(key, iccid)` can tell, and only its `NotFound` allows sending the key again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Applied:
    reference: str  # the carrier's own id for the top-up


@dataclass(frozen=True)
class Failed:
    permanent: bool  # False: the carrier may accept the same key later
    reason: str  # for machines: line_suspended, line_unknown, package_unknown, ...
    message: str  # for people, in our own words


@dataclass(frozen=True)
class NotFound:
    """The carrier has never applied this key."""


@dataclass(frozen=True)
class LineUsage:
    """A line's data as the carrier reports it (its `remaining` and `total`, in MB)."""

    remaining_mb: int
    total_mb: int
    unlimited: bool  # then remaining and total mean nothing (the carrier reports 0)
    status: str  # NOT_ACTIVE, ACTIVE, FINISHED, UNKNOWN, EXPIRED
    expires_at: datetime | None


class CarrierUnavailable(Exception):
    """A transient failure: nothing was done. `retry_after_s`: the carrier's own wait."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CarrierTimeout(Exception):
    """No answer in time: the outcome is unknown."""


class Carrier(Protocol):
    async def top_up(self, key: str, iccid: str, carrier_package_id: str) -> Applied | Failed:
        """Buy the carrier's top-up package `carrier_package_id` for the line, once per key."""
        ...

    async def status(self, key: str, iccid: str) -> Applied | Failed | NotFound:
        """What became of the key on the line: found among its top-ups, or never applied."""
        ...

    async def usage(self, iccid: str) -> LineUsage | None:
        """The line's data as the carrier counts it; None for a line it does not know."""
        ...
