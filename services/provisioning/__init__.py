"""Provisioning: tops up lines through the carrier and keeps their balances."""
