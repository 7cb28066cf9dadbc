"""A line's balance and how a top-up stacks onto it (pure functions, no I/O).

A line has one validity (`valid_until`) for its metered data and, while an
unlimited package runs, an unlimited period (`unlimited_until`, never later than
`valid_until`) with a full-speed fair-use allowance. The stacking rule is chosen
with the setting `STACKING_RULE` (docs/stacking.md has examples):

`extend` (default)
    Still-valid line: the data adds up and validity extends from the current
    expiry. Expired line: whatever was left is forfeited and validity starts now.
    Unlimited package: the unlimited period extends from its current end (or
    starts now), the line's validity extends by the same days, and the fair-use
    allowance (bonus included) adds to what is left of the running one. Metered
    data bought before or during an unlimited period is kept for after it.
`reset`
    Every top-up forfeits what was left (data, allowance, unlimited period) and
    validity starts now.

An unlimited package without a fair-use cap makes the running unlimited period
uncapped (`fair_use_remaining_mb` None). Bonus data of an unlimited package adds
to its fair-use allowance: it is data at full speed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class StackingRule(StrEnum):
    EXTEND = "extend"
    RESET = "reset"


@dataclass(frozen=True)
class Package:
    """What one top-up adds: metered data, or unlimited data with a fair-use cap."""

    data_mb: int | None  # None: unlimited
    validity_days: int
    bonus_mb: int = 0
    fair_use_mb: int | None = None  # cap of an unlimited package; None: no cap

    @property
    def unlimited(self) -> bool:
        return self.data_mb is None

    @property
    def data_added_mb(self) -> int | None:
        """The metered data added, bonus included; None for an unlimited package."""
        return None if self.data_mb is None else self.data_mb + self.bonus_mb


@dataclass(frozen=True)
class Balance:
    data_remaining_mb: int
    valid_until: datetime
    unlimited_until: datetime | None = None
    fair_use_remaining_mb: int | None = None  # while unlimited; None there means uncapped

    def unlimited_at(self, now: datetime) -> bool:
        return self.unlimited_until is not None and now < self.unlimited_until


def balance_at(balance: Balance | None, now: datetime) -> Balance | None:
    """What is still usable at `now`: nothing once the line has expired, and only the
    metered data once its unlimited period has ended."""
    if balance is None or balance.valid_until <= now:
        return None
    if balance.unlimited_until is not None and not balance.unlimited_at(now):
        return replace(balance, unlimited_until=None, fair_use_remaining_mb=None)
    return balance


def metered_mb(balance: Balance, now: datetime) -> int | None:
    """The balance as events report it: None while the line is unlimited."""
    return None if balance.unlimited_at(now) else balance.data_remaining_mb


def apply_top_up(
    current: Balance | None, package: Package, rule: StackingRule, now: datetime
) -> Balance:
    kept = balance_at(current, now) if rule is StackingRule.EXTEND else None
    # A line with nothing left stacks like an empty one that expires now.
    base = kept or Balance(data_remaining_mb=0, valid_until=now)
    days = timedelta(days=package.validity_days)
    if package.data_added_mb is not None:
        return replace(
            base,
            data_remaining_mb=base.data_remaining_mb + package.data_added_mb,
            valid_until=base.valid_until + days,
        )
    return replace(
        base,
        valid_until=base.valid_until + days,
        unlimited_until=(base.unlimited_until or now) + days,
        fair_use_remaining_mb=_added_allowance(base, package),
    )


def _added_allowance(base: Balance, package: Package) -> int | None:
    running_uncapped = base.unlimited_until is not None and base.fair_use_remaining_mb is None
    if package.fair_use_mb is None or running_uncapped:
        return None
    return (base.fair_use_remaining_mb or 0) + package.fair_use_mb + package.bonus_mb
