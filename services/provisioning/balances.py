"""Line balances and the stacking rule applied by a top-up.

Stacking rule (walking skeleton): a top-up adds its data to what remains and
extends validity from the later of now and the current expiry. Data of a line
whose validity has already ended is forfeited before the new data is added.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Balance:
    data_remaining_mb: int
    valid_until: datetime


def apply_top_up(
    current: Balance | None, data_mb: int, validity_days: int, now: datetime
) -> Balance:
    if current is None or current.valid_until <= now:
        return Balance(data_mb, now + timedelta(days=validity_days))
    return Balance(
        current.data_remaining_mb + data_mb,
        current.valid_until + timedelta(days=validity_days),
    )
