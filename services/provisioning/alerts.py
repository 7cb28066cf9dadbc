"""Usage and expiry alerts: which thresholds a line's package cycle has crossed (pure
functions; usage.py stores and publishes them, the line sweeper runs the time-based ones).

The package cycle. Each applied top-up starts a new cycle on its line, with a quota: the
data the line could use right after it (its metered data; while an unlimited period runs,
the fair-use allowance instead; None for an uncapped unlimited period). Every usage report
of the cycle adds to `used_mb`; the part of it beyond the balance (the balance stops at 0)
is also counted in `overage_mb`.

Percent used is what the cycle took from its quota, against the quota:

    percent used = 100 * (used_mb - overage_mb) / quota_mb

so it never exceeds 100 and overage does not count twice: with a 1000 MB quota, reports of
900 MB and then 300 MB make 100% used and 200 MB overage, not 120%. A quota of 0 is 100%
used. An uncapped unlimited cycle (quota None) has no percentage and no data alerts.

The alerts, each raised at most once per cycle (line_alerts' key is iccid, cycle, alert):
- `data_used_<p>` (kind data_used), for each p of ALERT_DATA_USED_PERCENT (default 75,
  90): percent used >= p, compared in integers (`100 * taken >= p * quota`, no rounding);
- `data_exhausted` (kind data_exhausted): the data the cycle draws from (metered data, or
  the fair-use allowance while unlimited) is down to 0;
- `expires_in_<d>d` (kind expiry_near), for each d of ALERT_DAYS_BEFORE_EXPIRY (default 3,
  1): now >= valid_until - d days, provided the cycle started before that moment. A cycle
  that starts with d days or less left (a package shorter than d days) does not raise it:
  the customer has just bought it, and an auto-renewal on `expires_in_<d>d` would
  otherwise renew again at once, and again, until validity were more than d days away;
- `validity_ended` (kind validity_ended): now >= valid_until. From then on it is the only
  one: what is left is forfeited, not used up, and warnings of what is past are pointless.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from services.provisioning.balances import Balance, balance_at
from shared.events import AlertKind

DATA_EXHAUSTED: Final = "data_exhausted"
VALIDITY_ENDED: Final = "validity_ended"


def data_used(percent: int) -> str:
    return f"data_used_{percent}"


def expires_in(days: int) -> str:
    return f"expires_in_{days}d"


@dataclass(frozen=True)
class AlertRules:
    """The thresholds (settings ALERT_DATA_USED_PERCENT, ALERT_DAYS_BEFORE_EXPIRY)."""

    data_used_percent: tuple[int, ...] = (75, 90)
    days_before_expiry: tuple[int, ...] = (3, 1)

    def names(self) -> tuple[str, ...]:
        """Every alert these rules can raise, in the order a cycle goes through them."""
        return (
            *(data_used(p) for p in sorted(self.data_used_percent)),
            DATA_EXHAUSTED,
            *(expires_in(d) for d in sorted(self.days_before_expiry, reverse=True)),
            VALIDITY_ENDED,
        )


@dataclass(frozen=True)
class Cycle:
    """A line's current package cycle, as far as alerts are concerned."""

    order_id: uuid.UUID  # the order whose applied top-up started it
    started_at: datetime
    quota_mb: int | None  # None: an uncapped unlimited period
    used_mb: int  # overage included
    overage_mb: int
    remaining_mb: int | None  # what usage draws from now; None: uncapped
    valid_until: datetime
    expired: bool  # validity ended and what was left was forfeited

    @property
    def taken_mb(self) -> int:
        """What the cycle took from its quota (its usage without the overage)."""
        return self.used_mb - self.overage_mb


@dataclass(frozen=True)
class Crossed:
    alert: str
    kind: AlertKind


def drawable_mb(balance: Balance, now: datetime) -> int | None:
    """What usage draws from at `now`: the fair-use allowance while an unlimited period
    runs (None: uncapped), else the metered data; 0 once validity has ended. A cycle's
    quota is this, right after the top-up that starts it."""
    usable = balance_at(balance, now)
    if usable is None:
        return 0
    return usable.fair_use_remaining_mb if usable.unlimited_at(now) else usable.data_remaining_mb


def percent_used(cycle: Cycle) -> float | None:
    """The module docstring's percent used, to one decimal; None without a quota."""
    if cycle.quota_mb is None:
        return None
    if cycle.quota_mb <= 0:
        return 100.0
    return round(min(100.0, 100 * cycle.taken_mb / cycle.quota_mb), 1)


def crossed(cycle: Cycle, rules: AlertRules, now: datetime) -> list[Crossed]:
    """Every threshold the cycle is past at `now` (raised or not yet), in `names()` order."""
    if cycle.expired or now >= cycle.valid_until:
        return [Crossed(VALIDITY_ENDED, "validity_ended")]
    return data_alerts(cycle, rules) + expiry_alerts(cycle, rules, now)


def data_alerts(cycle: Cycle, rules: AlertRules) -> list[Crossed]:
    if cycle.quota_mb is None:
        return []
    quota = max(cycle.quota_mb, 0)
    found = [
        Crossed(data_used(p), "data_used")
        for p in sorted(rules.data_used_percent)
        if 100 * cycle.taken_mb >= p * quota
    ]
    if cycle.remaining_mb is not None and cycle.remaining_mb <= 0:
        found.append(Crossed(DATA_EXHAUSTED, "data_exhausted"))
    return found


def expiry_alerts(cycle: Cycle, rules: AlertRules, now: datetime) -> list[Crossed]:
    found = []
    for days in sorted(rules.days_before_expiry, reverse=True):
        notice_at = cycle.valid_until - timedelta(days=days)
        if cycle.started_at < notice_at <= now:
            found.append(Crossed(expires_in(days), "expiry_near"))
    return found


def longest_notice(rules: AlertRules) -> timedelta:
    """How long before validity ends the first time-based alert is due (the sweeper's
    window); zero without any."""
    return timedelta(days=max(rules.days_before_expiry, default=0))
