"""What an order costs: list price, promotion discount, payment-method fee, total.

All in integer minor units; percentages round half up to the minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.orders.catalog import MethodFee, Package, Promotion
from shared.events import Money


@dataclass(frozen=True)
class Quote:
    price: Money
    discount: Money
    fee: Money
    total: Money
    bonus_mb: int
    promotion_code: str | None


def percent_of(amount: int, basis_points: int) -> int:
    """`amount * basis_points / 10_000`, rounded half up, in integers only."""
    return (amount * basis_points + 5_000) // 10_000


def quote(package: Package, currency: str, fee: MethodFee, promotion: Promotion | None) -> Quote:
    price = package.prices[currency]
    discount = min(price, _discount(price, currency, promotion))
    charged_before_fee = price - discount
    method_fee = percent_of(charged_before_fee, fee.percent_bp) + fee.fixed.get(currency, 0)

    def money(amount: int) -> Money:
        return Money(amount_minor=amount, currency=currency)

    return Quote(
        price=money(price),
        discount=money(discount),
        fee=money(method_fee),
        total=money(charged_before_fee + method_fee),
        bonus_mb=promotion.bonus_mb if promotion else 0,
        promotion_code=promotion.code if promotion else None,
    )


def _discount(price: int, currency: str, promotion: Promotion | None) -> int:
    if promotion is None:
        return 0
    if promotion.percent_off is not None:
        return percent_of(price, promotion.percent_off * 100)
    if promotion.amount_off is not None:
        return promotion.amount_off.get(currency, 0)
    return 0
