from datetime import UTC, datetime, timedelta

import pytest

from services.provisioning.balances import (
    Balance,
    Package,
    StackingRule,
    apply_top_up,
    balance_at,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXTEND, RESET = StackingRule.EXTEND, StackingRule.RESET


def days(n: int) -> datetime:
    return NOW + timedelta(days=n)


GB_7D = Package(data_mb=1024, validity_days=7)
GB_7D_BONUS = Package(data_mb=1024, validity_days=7, bonus_mb=100)
UNLIMITED_7D = Package(data_mb=None, validity_days=7, fair_use_mb=10_000)
UNLIMITED_UNCAPPED_7D = Package(data_mb=None, validity_days=7)

VALID_300 = Balance(300, days(2))
EXPIRED_300 = Balance(300, days(-1))
UNLIMITED_LINE = Balance(300, days(4), unlimited_until=days(3), fair_use_remaining_mb=2000)


@pytest.mark.parametrize(
    ("current", "package", "rule", "expected"),
    [
        pytest.param(None, GB_7D, EXTEND, Balance(1024, days(7)), id="first-top-up-valid-from-now"),
        pytest.param(
            VALID_300, GB_7D_BONUS, EXTEND, Balance(1424, days(9)),
            id="valid-line-adds-data-and-bonus-and-extends-from-expiry",
        ),
        pytest.param(
            EXPIRED_300, GB_7D, EXTEND, Balance(1024, days(7)),
            id="expired-line-forfeits-old-data-and-starts-now",
        ),
        pytest.param(
            Balance(300, NOW), GB_7D, EXTEND, Balance(1024, days(7)),
            id="a-line-expiring-this-instant-has-expired",
        ),
        pytest.param(
            VALID_300, GB_7D_BONUS, RESET, Balance(1124, days(7)),
            id="reset-forfeits-what-was-left-and-starts-now",
        ),
        pytest.param(
            UNLIMITED_LINE, GB_7D, RESET, Balance(1024, days(7)),
            id="reset-also-ends-a-running-unlimited-period",
        ),
    ],
)  # fmt: skip
def test_a_metered_top_up_stacks_by_the_rule(
    current: Balance | None, package: Package, rule: StackingRule, expected: Balance
) -> None:
    assert apply_top_up(current, package, rule, NOW) == expected


@pytest.mark.parametrize(
    ("current", "package", "rule", "expected"),
    [
        pytest.param(
            None, UNLIMITED_7D, EXTEND, Balance(0, days(7), days(7), 10_000),
            id="first-unlimited-top-up-runs-from-now",
        ),
        pytest.param(
            VALID_300, UNLIMITED_7D, EXTEND, Balance(300, days(9), days(7), 10_000),
            id="metered-data-is-kept-for-after-the-unlimited-period",
        ),
        pytest.param(
            UNLIMITED_LINE, UNLIMITED_7D, EXTEND, Balance(300, days(11), days(10), 12_000),
            id="running-unlimited-period-extends-and-its-allowance-adds-up",
        ),
        pytest.param(
            UNLIMITED_LINE, Package(None, 7, bonus_mb=500, fair_use_mb=1000), EXTEND,
            Balance(300, days(11), days(10), 3500),
            id="bonus-of-an-unlimited-package-adds-to-the-allowance",
        ),
        pytest.param(
            UNLIMITED_LINE, UNLIMITED_UNCAPPED_7D, EXTEND, Balance(300, days(11), days(10), None),
            id="an-uncapped-package-uncaps-the-running-period",
        ),
        pytest.param(
            Balance(300, days(4), days(3), None), UNLIMITED_7D, EXTEND,
            Balance(300, days(11), days(10), None),
            id="an-uncapped-period-stays-uncapped",
        ),
        pytest.param(
            Balance(300, days(4), days(-1), 2000), UNLIMITED_7D, EXTEND,
            Balance(300, days(11), days(7), 10_000),
            id="an-ended-unlimited-period-is-not-extended-but-restarted",
        ),
        pytest.param(
            UNLIMITED_LINE, GB_7D, EXTEND, Balance(1324, days(11), days(3), 2000),
            id="a-metered-top-up-leaves-the-unlimited-period-alone",
        ),
        pytest.param(
            UNLIMITED_LINE, UNLIMITED_7D, RESET, Balance(0, days(7), days(7), 10_000),
            id="reset-forfeits-allowance-and-metered-data",
        ),
    ],
)  # fmt: skip
def test_an_unlimited_top_up_stacks_by_the_rule(
    current: Balance | None, package: Package, rule: StackingRule, expected: Balance
) -> None:
    assert apply_top_up(current, package, rule, NOW) == expected


@pytest.mark.parametrize("rule", list(StackingRule))
@pytest.mark.parametrize("current", [None, VALID_300, EXPIRED_300, UNLIMITED_LINE])
@pytest.mark.parametrize("package", [GB_7D, GB_7D_BONUS, UNLIMITED_7D, UNLIMITED_UNCAPPED_7D])
def test_a_top_up_never_ends_before_its_own_validity_nor_unlimited_after_the_line(
    current: Balance | None, package: Package, rule: StackingRule
) -> None:
    after = apply_top_up(current, package, rule, NOW)
    assert after.valid_until >= days(package.validity_days)
    if after.unlimited_until is not None:
        assert after.unlimited_until <= after.valid_until
    assert after.unlimited_at(NOW) == (
        package.unlimited or (current is not None and rule is EXTEND and current.unlimited_at(NOW))
    )


def test_an_expired_line_has_nothing_left() -> None:
    assert balance_at(EXPIRED_300, NOW) is None


def test_a_line_whose_unlimited_period_ended_keeps_its_metered_data() -> None:
    later = days(3)
    assert balance_at(UNLIMITED_LINE, later) == Balance(300, days(4))


def test_the_metered_data_added_includes_the_bonus_and_is_none_when_unlimited() -> None:
    assert GB_7D_BONUS.data_added_mb == 1124
    assert UNLIMITED_7D.data_added_mb is None
