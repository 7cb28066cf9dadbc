from datetime import UTC, datetime, timedelta

from services.provisioning.balances import Balance, apply_top_up

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_first_top_up_starts_validity_now() -> None:
    assert apply_top_up(None, 1024, 7, NOW) == Balance(1024, NOW + timedelta(days=7))


def test_top_up_of_a_valid_line_adds_data_and_extends_its_expiry() -> None:
    current = Balance(300, NOW + timedelta(days=2))
    assert apply_top_up(current, 1024, 7, NOW) == Balance(1324, NOW + timedelta(days=9))


def test_top_up_of_an_expired_line_forfeits_the_old_data() -> None:
    current = Balance(300, NOW - timedelta(days=1))
    assert apply_top_up(current, 1024, 7, NOW) == Balance(1024, NOW + timedelta(days=7))
