from datetime import UTC, datetime

import pytest

from services.orders.catalog import load_catalog
from services.orders.validation import Accepted, Rejected, parse_request, validate
from shared.events import PlaceOrder
from tests.factories import order_request

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def check(**overrides: object) -> Accepted | Rejected:
    parsed = parse_request(order_request(**overrides))
    assert isinstance(parsed, PlaceOrder)
    return validate(parsed, load_catalog(), NOW)


def test_a_valid_request_is_accepted_at_the_catalog_price() -> None:
    decision = check()
    assert isinstance(decision, Accepted)
    assert decision.quote.total.amount_minor == 1500


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"package_id": "moon-1tb"}, "unknown_package"),
        ({"iccid": "8944500102198304827"}, "invalid_iccid"),  # wrong check digit
        ({"iccid": "894450010219830482"}, "invalid_iccid"),  # 18 digits
        ({"iccid": "1944500102198304826"}, "invalid_iccid"),  # not starting 89
        ({"msisdn": "07700900123"}, "invalid_msisdn"),
        ({"email": "traveller@"}, "invalid_email"),
        ({"currency": "JPY"}, "unsupported_currency"),
        ({"package_id": "global-10gb-30d", "currency": "CNY"}, "unsupported_currency"),
        ({"payment_method": "cash"}, "unsupported_payment_method"),
        ({"promotion_code": "NOPE"}, "invalid_promotion"),
        ({"promotion_code": "SUMMER25"}, "invalid_promotion"),  # ended
        ({"package_id": "eu-1gb-7d", "promotion_code": "TRAVEL2"}, "invalid_promotion"),
        (  # an amount off in EUR, USD and GBP only: it would take nothing off in CNY
            {
                "package_id": "eu-5gb-30d",
                "promotion_code": "TRAVEL2",
                "currency": "CNY",
                "payment_method": "alipay",
            },
            "invalid_promotion",
        ),
    ],
)
def test_an_invalid_request_is_rejected_with_its_reason(
    overrides: dict[str, object], reason: str
) -> None:
    decision = check(**overrides)
    assert isinstance(decision, Rejected)
    assert decision.reason == reason
    assert decision.message


def test_a_request_missing_fields_is_malformed_and_says_which() -> None:
    body = order_request()
    del body["payment_token"]
    parsed = parse_request(body)
    assert isinstance(parsed, Rejected)
    assert parsed.reason == "malformed_request"
    assert "payment_token" in parsed.message


def test_a_request_naming_another_order_id_is_malformed() -> None:
    parsed = parse_request(order_request(order_id="00000000-0000-0000-0000-000000000000"))
    assert isinstance(parsed, Rejected)
    assert parsed.reason == "malformed_request"


def test_promotion_codes_are_case_insensitive() -> None:
    decision = check(promotion_code="welcome10")
    assert isinstance(decision, Accepted)
    assert decision.quote.promotion_code == "WELCOME10"


@pytest.mark.parametrize(
    "overrides",
    [
        {"promotion_code": '"\\' * 150_000},  # quotes and backslashes: escapes double it
        {"package_id": "é" * 200_000},
        {"currency": "\x00" * 100_000},
        {"payment_method": "x" * 300_000},
        {"email": "a" * 100_000 + "@"},
    ],
    ids=["promotion", "package", "currency", "payment-method", "email"],
)
def test_a_value_beyond_its_bound_is_malformed_and_the_answer_says_which_not_what(
    overrides: dict[str, object],
) -> None:
    decision = parse_request(order_request(**overrides))
    assert isinstance(decision, Rejected)
    assert decision.reason == "malformed_request"
    [field] = overrides
    assert field in decision.message
    assert len(decision.message) <= 500


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"promotion_code": '"\\' * 32}, "invalid_promotion"),  # 64: at its bound
        ({"package_id": "é" * 64}, "unknown_package"),
    ],
)
def test_a_rejection_quotes_a_short_prefix_of_what_it_refuses(
    overrides: dict[str, object], reason: str
) -> None:
    decision = check(**overrides)
    assert isinstance(decision, Rejected)
    assert decision.reason == reason
    [value] = overrides.values()
    assert repr(value) not in decision.message, "not the whole value"
    assert repr(value)[:30] in decision.message, "but a prefix of it"


def test_a_request_with_many_wrong_fields_gets_a_bounded_malformed_answer() -> None:
    body = {f"field_{i}" * 100: i for i in range(1000)} | {"type": "PlaceOrder"}
    decision = parse_request(body)
    assert isinstance(decision, Rejected)
    assert decision.reason == "malformed_request"
    assert len(decision.message) <= 500


def in_digits_of(zero: int) -> str:
    """4242424242424242 in another script's digits (fullwidth: 0xFF10, Arabic-Indic: 0x0660)."""
    return "".join(chr(zero + int(d)) for d in "4242424242424242")


@pytest.mark.parametrize(
    "token",
    [
        "4242424242424242",
        "4242.4242.4242.4242",
        "4242/4242/4242/4242",
        "card:4242 4242 4242 4242",
        "4242,4242,4242,4242",
        "4242+4242+4242+4242",
        "4242 - 4242 - 4242 - 4242",
        in_digits_of(0xFF10),
        in_digits_of(0x0660),
        "4242\u200b4242\u200b4242\u200b4242",
        "42424242424242421227",
    ],
)
def test_a_card_number_in_any_form_is_refused_before_anything_else(token: str) -> None:
    decision = parse_request(order_request(payment_token=token, email="x" * 300))  # card first
    assert isinstance(decision, Rejected)
    assert decision.reason == "card_number_not_accepted"
    assert "4242" not in decision.message
    assert "4242" not in decision.message.translate({0xFF10 + d: str(d) for d in range(10)})
