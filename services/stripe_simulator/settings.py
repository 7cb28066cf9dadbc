"""The simulator's configuration, each an environment variable of the same name."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings

NAME = "stripe_simulator"


class SimulatorSettings(ServiceSettings):
    """The common process settings (HTTP_HOST, HTTP_PORT: 8010, DATABASE_URL: default
    var/data/stripe_simulator.db, LOG_LEVEL) and the simulator's own."""

    service_name: str = NAME

    # The secret key it accepts (Bearer) and the secret it signs its webhooks with.
    stripe_api_key: SecretStr = SecretStr("sk_test_simulator")
    stripe_webhook_secret: SecretStr = SecretStr("whsec_simulator")
    # Where its events go (payments' /webhooks/stripe; several, comma-separated, stand for
    # a load balancer: each event goes to the first that takes it); none: kept, not sent.
    stripe_webhook_url: str = ""

    # How the outside world behaves.
    provider_latency_ms: int = Field(default=100, ge=0, description="mean, jittered +-50%")
    provider_decline_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    provider_timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    provider_confirm_after_s: float = Field(default=2.0, ge=0.0)
    provider_seed: int | None = Field(default=None, description="repeatable randomness")
    provider_rate_limit_per_s: float = Field(default=0.0, ge=0.0, description="0: no limit")
    provider_hang_s: float = Field(
        default=15.0, ge=0.0, description="how long a timed-out answer is held"
    )
    # The pace of its background work: confirmations and webhook deliveries.
    webhook_retry_base_s: float = Field(default=0.5, gt=0.0)
    webhook_retry_max_s: float = Field(default=30.0, gt=0.0)
    tick_s: float = Field(default=0.2, gt=0.0)
