"""Payments: charges and refunds through the payment providers."""
