"""The catalog maps each of our packages to the carrier's top-up package provisioning
buys (`carrier_package_id`, an additive field of the catalog file)."""

from __future__ import annotations

import json
from pathlib import Path

from services.carrier_simulator.packages import PACKAGES
from services.orders.catalog import DEFAULT_CATALOG, Catalog, load_catalog
from services.provisioning.provisioning import carrier_package_of


def test_every_catalog_package_is_a_package_the_carrier_offers_with_the_same_quota() -> None:
    catalog = load_catalog(DEFAULT_CATALOG)
    for package in catalog.packages.values():
        assert package.carrier_package_id is not None, package.package_id
        theirs = PACKAGES[package.carrier_package_id]
        assert theirs.days == package.validity_days
        assert theirs.unlimited == (package.data_mb is None)
        if package.data_mb is not None:
            assert theirs.data_mb == package.data_mb


def test_a_catalog_without_carrier_ids_still_parses_and_its_packages_are_not_provisionable(
    tmp_path: Path,
) -> None:
    data = json.loads(DEFAULT_CATALOG.read_text())
    for package in data["packages"]:
        package.pop("carrier_package_id")
    older = tmp_path / "catalog.json"
    older.write_text(json.dumps(data))
    assert all(p.carrier_package_id is None for p in load_catalog(older).packages.values())
    assert carrier_package_of(older, "eu-1gb-7d") is None
    assert carrier_package_of(DEFAULT_CATALOG, "eu-1gb-7d") == "eurolink-7days-1gb-topup"
    assert carrier_package_of(DEFAULT_CATALOG, "no-such-package") is None


def test_what_the_catalog_shows_internal_systems_leaves_the_carriers_ids_out() -> None:
    shown = load_catalog(DEFAULT_CATALOG).model_dump(mode="json")
    assert all("carrier_package_id" not in p for p in shown["packages"].values())
    assert Catalog.model_validate(json.loads(DEFAULT_CATALOG.read_text())).packages
