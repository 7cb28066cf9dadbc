"""The carrier's top-up packages: what `GET /v2/sims/{iccid}/topups` offers and what a
top-up order may buy (our catalog maps its packages to these ids)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class CarrierPackage:
    package_id: str
    title: str
    data_mb: int  # 0 for an unlimited one, as the API reports it
    days: int
    price_usd: int
    net_price_usd: int
    unlimited: bool = False


PACKAGES: Final = {
    package.package_id: package
    for package in (
        CarrierPackage("eurolink-7days-1gb-topup", "1 GB - 7 Days", 1024, 7, 5, 3),
        CarrierPackage("eurolink-30days-5gb-topup", "5 GB - 30 Days", 5120, 30, 16, 11),
        CarrierPackage("discover-30days-10gb-topup", "10 GB - 30 Days", 10240, 30, 38, 27),
        CarrierPackage(
            "eurolink-30days-unlimited-topup", "Unlimited - 30 Days", 0, 30, 49, 35, unlimited=True
        ),
        CarrierPackage("discover-365days-20gb-topup", "20 GB - 365 Days", 20480, 365, 109, 80),
    )
}

# Currencies the API quotes a price in, as rates from USD (a simulator's fixed rates).
RATES: Final = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "AED": 3.67, "JPY": 156.0}


def prices(usd: int) -> dict[str, int | float]:
    return {
        currency: round(usd * rate) if currency in ("USD", "JPY") else round(usd * rate, 2)
        for currency, rate in RATES.items()
    }
