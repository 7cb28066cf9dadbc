"""Fixtures the unit tests share; they are defined in the modules named here."""

from tests.unit.payments_fixtures import clock, provider, provider_engine, stripe_simulator

__all__ = ["clock", "provider", "provider_engine", "stripe_simulator"]
