"""How hard auto-renewal tries (settings AUTO_RENEWAL_MAX_ATTEMPTS, AUTO_RENEWAL_RETRY_DELAY_S)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenewalPolicy:
    """A declined renewal is placed again after `retry_delay_s`, `max_attempts` renewal
    orders in all per crossing; then auto-renewal pauses."""

    max_attempts: int = 3
    retry_delay_s: float = 600.0
