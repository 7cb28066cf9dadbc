"""A server of the subset of Stripe's API that payments' adapter uses (see app.py)."""
