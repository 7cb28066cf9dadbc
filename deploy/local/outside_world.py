"""The outside world as processes of its own: a server of Stripe's API for payments and a
server of the eSIM partner API for provisioning (services/stripe_simulator,
services/carrier_simulator).

Each simulator is paired with the service that calls it: the same API key, webhook
secret and client credentials on both sides, generated afresh for every stack (nothing
to store: they are the simulators' own), and each side told where the other listens.
The services reach them only over HTTP, through the adapters a real account would use.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

STRIPE_SIMULATOR: Final = "stripe_simulator"
CARRIER_SIMULATOR: Final = "carrier_simulator"
SIMULATORS: Final = (STRIPE_SIMULATOR, CARRIER_SIMULATOR)
# Who talks to whom: a simulator's client is this service, told where by this variable.
CLIENT_OF: Final = {STRIPE_SIMULATOR: "payments", CARRIER_SIMULATOR: "provisioning"}
API_BASE: Final = {STRIPE_SIMULATOR: "STRIPE_API_BASE", CARRIER_SIMULATOR: "CARRIER_API_BASE"}
WEBHOOK_PATH: Final = "/webhooks/stripe"


def _secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(24)}"


@dataclass(frozen=True)
class OutsideWorld:
    """Where the simulators and payments listen, and the credentials both sides share."""

    stripe_url: str  # "": not simulated (payments is given a real API's address)
    carrier_url: str
    # Payments' base URLs: the Stripe simulator delivers its webhooks to the first that
    # answers (a load balancer's stand-in when several payments processes run).
    payments_urls: tuple[str, ...]
    stripe_api_key: str = field(default_factory=lambda: _secret("sk_test_local_"), repr=False)
    stripe_webhook_secret: str = field(default_factory=lambda: _secret("whsec_"), repr=False)
    carrier_client_id: str = "topup-billing-local"
    carrier_client_secret: str = field(default_factory=lambda: _secret(""), repr=False)

    def env(self, name: str) -> dict[str, str]:
        """What process `name` (a service or a simulator) needs to reach its counterpart."""
        stripe = {
            "STRIPE_API_KEY": self.stripe_api_key,
            "STRIPE_WEBHOOK_SECRET": self.stripe_webhook_secret,
        }
        carrier = {
            "CARRIER_CLIENT_ID": self.carrier_client_id,
            "CARRIER_CLIENT_SECRET": self.carrier_client_secret,
        }
        match name:
            case "payments" if self.stripe_url:
                return stripe | {"PAYMENT_PROVIDER": "stripe", "STRIPE_API_BASE": self.stripe_url}
            case "provisioning" if self.carrier_url:
                return carrier | {"CARRIER_API_BASE": self.carrier_url}
            case "stripe_simulator":
                webhooks = ",".join(f"{url}{WEBHOOK_PATH}" for url in self.payments_urls)
                return stripe | {"STRIPE_WEBHOOK_URL": webhooks}
            case "carrier_simulator":
                return carrier
        return {}


def outside_world_for(urls: Mapping[str, str | list[str]]) -> OutsideWorld:
    """The pairing for processes listening at `urls` (name -> base URL, or a list of them
    for a service that runs several processes); a simulator left out is not simulated."""

    def listed(name: str) -> list[str]:
        url = urls.get(name, "")
        return [url] if isinstance(url, str) else list(url)

    return OutsideWorld(
        stripe_url=listed(STRIPE_SIMULATOR)[0],
        carrier_url=listed(CARRIER_SIMULATOR)[0],
        payments_urls=tuple(listed("payments")),
    )


def simulated(env: Mapping[str, str]) -> tuple[str, ...]:
    """The simulators to start: each one whose API the user did not point elsewhere
    (STRIPE_API_BASE at Stripe's test mode, CARRIER_API_BASE at a carrier's sandbox)."""
    return tuple(name for name in SIMULATORS if not env.get(API_BASE[name]))
