"""The packages on sale (a fixed list until the versioned catalog file arrives)."""

from dataclasses import dataclass

from shared.events import Money


@dataclass(frozen=True)
class Package:
    package_id: str
    data_mb: int
    validity_days: int
    price: Money


PACKAGES = {
    p.package_id: p
    for p in (
        Package("eu-1gb-7d", 1024, 7, Money(amount_minor=500, currency="EUR")),
        Package("eu-5gb-30d", 5120, 30, Money(amount_minor=1500, currency="EUR")),
    )
}
