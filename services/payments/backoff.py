"""When to ask the provider again about a payment that is not settled yet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# 2**30 base intervals is decades: past that the cap applies anyway, and a bigger
# exponent would only risk a float overflow on a row that has been retried for ever.
_MAX_EXPONENT = 30


@dataclass(frozen=True)
class Backoff:
    """Exponential and capped per row, so an unanswered payment never loops hot.

    `new_grace_s` is how long a row whose provider call is under way is left
    alone: past it, the process that made the call is presumed to have crashed.
    """

    base_s: float = 0.5
    max_s: float = 30.0
    new_grace_s: float = 10.0

    def after(self, attempts: int, now: datetime) -> datetime:
        """The next check after `attempts` calls: base, 2 x base, 4 x base ... up to max."""
        exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
        return now + timedelta(seconds=min(self.base_s * 2**exponent, self.max_s))

    def grace(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.new_grace_s)
