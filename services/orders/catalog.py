"""The catalog: packages, promotions and payment-method fees, from a versioned data file.

The file (`data/catalog.json`, or `CATALOG_PATH`) carries a `version` that every
order records, so an order can always be explained by the prices it was sold at.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_CATALOG = Path(__file__).parent / "data" / "catalog.json"

MinorUnits = dict[str, int]  # currency -> integer minor units


class Package(BaseModel):
    model_config = ConfigDict(frozen=True)

    package_id: str
    name: str
    data_mb: int | None = Field(ge=1, description="None: unlimited, capped by fair_use_mb")
    fair_use_mb: int | None = Field(default=None, ge=1)
    validity_days: int = Field(ge=1, le=365)
    prices: MinorUnits
    # The carrier's top-up package that provisioning buys for it (its partner API's
    # package_id); None: not mapped, so not provisionable. Optional: older files lack it.
    # Not part of what /catalog shows.
    carrier_package_id: str | None = Field(default=None, min_length=1, max_length=64, exclude=True)

    @model_validator(mode="after")
    def _unlimited_has_a_cap(self) -> Package:
        if self.data_mb is None and self.fair_use_mb is None:
            raise ValueError(f"{self.package_id}: an unlimited package needs fair_use_mb")
        return self


class Promotion(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    description: str
    percent_off: int | None = Field(default=None, ge=1, le=100)
    amount_off: MinorUnits | None = None
    bonus_mb: int = Field(default=0, ge=0)
    package_ids: frozenset[str] | None = Field(default=None, description="None: every package")
    valid_from: datetime
    valid_until: datetime

    def applies(self, package_id: str, currency: str, at: datetime) -> bool:
        """In its window, for this package, and (an amount off) in this currency: a code
        that would take nothing off is not silently accepted."""
        in_window = self.valid_from <= at <= self.valid_until
        for_package = self.package_ids is None or package_id in self.package_ids
        in_currency = self.amount_off is None or currency in self.amount_off
        return in_window and for_package and in_currency


class MethodFee(BaseModel):
    """A payment method's surcharge: basis points of the amount plus a fixed part."""

    model_config = ConfigDict(frozen=True)

    percent_bp: int = Field(ge=0, le=10_000)
    fixed: MinorUnits


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    currencies: frozenset[str]
    packages: dict[str, Package]
    promotions: dict[str, Promotion]
    payment_methods: dict[Literal["card", "paypal", "alipay", "wechat_pay"], MethodFee]

    @model_validator(mode="before")
    @classmethod
    def _index_lists(cls, data: dict[str, object]) -> dict[str, object]:
        packages = data.get("packages")
        promotions = data.get("promotions")
        if isinstance(packages, list):
            data = {**data, "packages": {p["package_id"]: p for p in packages}}
        if isinstance(promotions, list):
            data = {**data, "promotions": {p["code"].upper(): p for p in promotions}}
        return data


@cache
def load_catalog(path: Path = DEFAULT_CATALOG) -> Catalog:
    return Catalog.model_validate(json.loads(path.read_text()))
