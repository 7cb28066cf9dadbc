from datetime import UTC, datetime

from services.orders.catalog import MethodFee, Package, Promotion, load_catalog
from services.orders.pricing import percent_of, quote

PACKAGE = Package(
    package_id="p", name="P", data_mb=1024, validity_days=7, prices={"EUR": 999, "USD": 1000}
)
FREE = MethodFee(percent_bp=0, fixed={})
WINDOW = {
    "valid_from": datetime(2026, 1, 1, tzinfo=UTC),
    "valid_until": datetime(2027, 1, 1, tzinfo=UTC),
}


def test_percentages_round_half_up_to_the_minor_unit() -> None:
    assert percent_of(999, 1000) == 100  # 99.9 -> 100
    assert percent_of(5, 1000) == 1  # 0.5 -> 1
    assert percent_of(4, 1000) == 0  # 0.4 -> 0


def test_without_promotion_or_fee_the_total_is_the_list_price() -> None:
    q = quote(PACKAGE, "EUR", FREE, None)
    assert (q.price.amount_minor, q.discount.amount_minor, q.fee.amount_minor) == (999, 0, 0)
    assert q.total.amount_minor == 999


def test_a_percent_promotion_discounts_and_the_fee_applies_to_what_remains() -> None:
    promo = Promotion(code="P10", description="", percent_off=10, **WINDOW)
    paypal = MethodFee(percent_bp=340, fixed={"EUR": 35})
    q = quote(PACKAGE, "EUR", paypal, promo)
    assert q.discount.amount_minor == 100  # 10% of 9.99, rounded
    assert q.fee.amount_minor == percent_of(899, 340) + 35 == 66
    assert q.total.amount_minor == 899 + 66


def test_a_fixed_discount_never_makes_the_price_negative() -> None:
    promo = Promotion(code="BIG", description="", amount_off={"EUR": 5000}, **WINDOW)
    q = quote(PACKAGE, "EUR", FREE, promo)
    assert q.discount.amount_minor == 999
    assert q.total.amount_minor == 0


def test_a_bonus_promotion_adds_data_and_keeps_the_price() -> None:
    promo = Promotion(code="B", description="", bonus_mb=1024, **WINDOW)
    q = quote(PACKAGE, "USD", FREE, promo)
    assert (q.bonus_mb, q.total.amount_minor, q.total.currency) == (1024, 1000, "USD")


def test_the_shipped_catalog_prices_every_package_in_a_supported_currency() -> None:
    catalog = load_catalog()
    assert catalog.version
    for package in catalog.packages.values():
        assert package.prices
        assert set(package.prices) <= catalog.currencies
    assert set(catalog.payment_methods) == {"card", "paypal", "alipay", "wechat_pay"}
