"""Usage and expiry alerts: which thresholds a line's package cycle has crossed
(pure functions; usage.py and line_sweeper.py store and publish them).

TO BE WRITTEN (helper A): AlertRules, crossed(...)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlertRules:
    """The thresholds (settings ALERT_DATA_USED_PERCENT, ALERT_DAYS_BEFORE_EXPIRY)."""

    data_used_percent: tuple[int, ...] = (75, 90)
    days_before_expiry: tuple[int, ...] = (3, 1)
