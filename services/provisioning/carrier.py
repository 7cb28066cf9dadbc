"""The carrier: the outside system that actually adds data to a line.

Every call names an idempotency key (`f"{order_id}:topup"`): the carrier applies a
key at most once and answers the same key with the same result. A call either
answers (`Applied`, `Failed`) or raises:

- `CarrierUnavailable`: refused before doing anything (busy, 503); safe to send again.
- `CarrierTimeout`: no answer in time; the top-up may or may not have been applied.
  Only `status(key)` can tell, and only its `NotFound` allows sending the key again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Applied:
    reference: str  # the carrier's own id for the top-up


@dataclass(frozen=True)
class Failed:
    permanent: bool  # False: the carrier may accept the same key later
    reason: str  # for machines: line_suspended, line_unknown, ...
    message: str  # for people


@dataclass(frozen=True)
class NotFound:
    """The carrier has never processed this key."""


class CarrierUnavailable(Exception):
    """A transient failure: nothing was done."""


class CarrierTimeout(Exception):
    """No answer in time: the outcome is unknown."""


class Carrier(Protocol):
    async def top_up(
        self, key: str, iccid: str, data_mb: int | None, validity_days: int
    ) -> Applied | Failed:
        """Add `data_mb` (None: unlimited) and `validity_days` to the line, once per key."""
        ...

    async def status(self, key: str) -> Applied | Failed | NotFound: ...
