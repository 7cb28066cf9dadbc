"""Usage and alerts as pure functions: what a report takes from a balance, and which
thresholds a package cycle has crossed."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.provisioning.alerts import (
    AlertRules,
    Crossed,
    Cycle,
    crossed,
    drawable_mb,
    percent_used,
)
from services.provisioning.balances import Balance
from services.provisioning.usage import Taken, take

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = AlertRules(data_used_percent=(75, 90), days_before_expiry=(3, 1))


def days(n: float) -> datetime:
    return NOW + timedelta(days=n)


def cycle(quota: int | None = 1000, used: int = 0, overage: int = 0, **changes: object) -> Cycle:
    remaining = None if quota is None else max(quota - (used - overage), 0)
    fresh = Cycle(
        order_id=uuid.uuid4(), started_at=days(-20), quota_mb=quota, used_mb=used,
        overage_mb=overage, remaining_mb=remaining, valid_until=days(30), expired=False,
    )  # fmt: skip
    return replace(fresh, **changes)  # type: ignore[arg-type]


def names(found: list[Crossed]) -> list[str]:
    return [c.alert for c in found]


def test_the_configured_alerts_are_named_in_the_order_a_cycle_meets_them() -> None:
    assert RULES.names() == (
        "data_used_75", "data_used_90", "data_exhausted", "expires_in_3d", "expires_in_1d",
        "validity_ended",
    )  # fmt: skip
    assert AlertRules(data_used_percent=(), days_before_expiry=(7,)).names() == (
        "data_exhausted", "expires_in_7d", "validity_ended",
    )  # fmt: skip


def test_a_fresh_cycle_has_crossed_nothing() -> None:
    assert crossed(cycle(), RULES, NOW) == []


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        (749, []),
        (750, ["data_used_75"]),
        (899, ["data_used_75"]),
        (900, ["data_used_75", "data_used_90"]),
        (1000, ["data_used_75", "data_used_90", "data_exhausted"]),
    ],
)
def test_a_data_threshold_is_crossed_at_exactly_its_percentage_of_the_quota(
    used: int, expected: list[str]
) -> None:
    assert names(crossed(cycle(used=used), RULES, NOW)) == expected


def test_each_crossed_alert_says_its_kind() -> None:
    found = crossed(cycle(used=1000, valid_until=days(0.5)), RULES, NOW)
    assert [(c.alert, c.kind) for c in found] == [
        ("data_used_75", "data_used"),
        ("data_used_90", "data_used"),
        ("data_exhausted", "data_exhausted"),
        ("expires_in_3d", "expiry_near"),
        ("expires_in_1d", "expiry_near"),
    ]


def test_overage_does_not_count_twice_in_the_percentage_used() -> None:
    # 900 MB then 300 MB on a 1000 MB quota: 1200 used, 200 of it beyond the balance.
    used_up = cycle(used=1200, overage=200)
    assert percent_used(used_up) == 100.0
    assert names(crossed(used_up, RULES, NOW)) == ["data_used_75", "data_used_90", "data_exhausted"]
    assert percent_used(cycle(used=333)) == 33.3


def test_an_uncapped_unlimited_cycle_has_no_percentage_and_no_data_alerts() -> None:
    unlimited = cycle(quota=None, used=500_000)
    assert percent_used(unlimited) is None
    assert crossed(unlimited, RULES, NOW) == []


def test_a_cycle_that_started_with_nothing_is_used_up() -> None:
    empty = cycle(quota=0)
    assert percent_used(empty) == 100.0
    assert names(crossed(empty, RULES, NOW)) == ["data_used_75", "data_used_90", "data_exhausted"]


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (timedelta(days=3, seconds=1), []),
        (timedelta(days=3), ["expires_in_3d"]),
        (timedelta(days=1, hours=1), ["expires_in_3d"]),
        (timedelta(days=1), ["expires_in_3d", "expires_in_1d"]),
        (timedelta(seconds=1), ["expires_in_3d", "expires_in_1d"]),
    ],
)
def test_an_expiry_warning_is_due_its_number_of_days_before_validity_ends(
    left: timedelta, expected: list[str]
) -> None:
    assert names(crossed(cycle(valid_until=NOW + left), RULES, NOW)) == expected


def test_a_cycle_that_starts_with_less_notice_left_is_not_warned_of_it() -> None:
    # A 2-day package bought now: the 3-day warning's moment passed before it started,
    # so it is not raised (an auto-renewal on it would renew again at once, and again).
    short = cycle(started_at=NOW - timedelta(hours=1), valid_until=days(2))
    assert names(crossed(short, RULES, NOW)) == []
    assert names(crossed(short, RULES, days(1.5))) == ["expires_in_1d"]


def test_once_validity_has_ended_only_validity_ended_is_crossed() -> None:
    ended = cycle(used=1000, valid_until=NOW)
    assert crossed(ended, RULES, NOW) == [Crossed("validity_ended", "validity_ended")]
    forfeited = cycle(used=10, remaining_mb=0, expired=True)
    assert names(crossed(forfeited, RULES, NOW)) == ["validity_ended"]


def test_with_no_thresholds_configured_data_exhausted_is_still_raised() -> None:
    rules = AlertRules(data_used_percent=(), days_before_expiry=())
    assert names(crossed(cycle(used=1000, valid_until=days(0.1)), rules, NOW)) == ["data_exhausted"]


# --- what a report takes from a balance -------------------------------------------------

METERED = Balance(data_remaining_mb=1000, valid_until=days(7))
UNLIMITED = Balance(500, days(7), unlimited_until=days(5), fair_use_remaining_mb=2000)


def test_usage_within_the_balance_is_taken_from_it() -> None:
    assert take(METERED, 300, NOW) == Taken(replace(METERED, data_remaining_mb=700), 300, 0)


def test_usage_beyond_the_balance_stops_it_at_zero_and_the_excess_is_overage() -> None:
    assert take(METERED, 1300, NOW) == Taken(replace(METERED, data_remaining_mb=0), 1000, 300)
    empty = replace(METERED, data_remaining_mb=0)
    assert take(empty, 50, NOW) == Taken(empty, 0, 50)


def test_an_unlimited_period_draws_on_its_allowance_and_keeps_the_metered_data() -> None:
    taken = take(UNLIMITED, 2500, NOW)
    assert taken == Taken(replace(UNLIMITED, fair_use_remaining_mb=0), 2000, 500)
    assert taken.balance.data_remaining_mb == 500


def test_an_uncapped_unlimited_period_covers_all_usage() -> None:
    uncapped = replace(UNLIMITED, fair_use_remaining_mb=None)
    assert take(uncapped, 100_000, NOW) == Taken(uncapped, 100_000, 0)


def test_after_the_unlimited_period_usage_draws_on_the_metered_data() -> None:
    taken = take(UNLIMITED, 200, days(6))
    assert (taken.balance.data_remaining_mb, taken.applied_mb, taken.overage_mb) == (300, 200, 0)


def test_usage_on_an_expired_line_is_all_overage() -> None:
    assert take(METERED, 80, days(7)) == Taken(METERED, 0, 80)


def test_what_usage_draws_from_is_the_allowance_while_unlimited_else_the_data() -> None:
    assert drawable_mb(METERED, NOW) == 1000
    assert drawable_mb(UNLIMITED, NOW) == 2000
    assert drawable_mb(UNLIMITED, days(6)) == 500
    assert drawable_mb(replace(UNLIMITED, fair_use_remaining_mb=None), NOW) is None
    assert drawable_mb(METERED, days(7)) == 0
