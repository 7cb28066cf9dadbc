"""The carrier simulator's settings, each an environment variable of the same name in
upper case. Failures are off by default so that a plain run is deterministic; set the
rates to see retries. CARRIER_SEED fixes the dice for a repeatable run."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.settings import ServiceSettings

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]


class CarrierSimulatorSettings(ServiceSettings):
    service_name: str = "carrier_simulator"
    http_port: int | None = Field(default=8011, ge=0, le=65535)

    # The client credentials it accepts (provisioning's CARRIER_CLIENT_ID/_SECRET); the
    # defaults are provisioning's too, so that a plain run needs no configuration.
    carrier_client_id: str = "topup-local"
    carrier_client_secret: SecretStr = SecretStr("topup-local-secret")
    carrier_token_ttl_s: Annotated[int, Field(ge=1)] = 86_400  # the API's: 24 hours

    carrier_latency_ms: Annotated[float, Field(ge=0.0)] = 150.0  # mean, jittered +-50%
    carrier_transient_failure_rate: Rate = 0.0  # 503, nothing done
    carrier_timeout_rate: Rate = 0.0  # the answer held CARRIER_HANG_S ...
    carrier_timeout_applied_rate: Rate = 0.5  # ... of those, processed before (else not)
    carrier_hang_s: Seconds = 30.0  # longer than a client waits
    # A top-up not placed within this long of its arrival is given up (504, nothing
    # done), as a gateway's timeout would: a slow request lands late, never later than
    # this. Provisioning's CARRIER_IN_FLIGHT_S must be longer.
    carrier_request_deadline_s: Annotated[float, Field(gt=0.0)] = 30.0
    carrier_rate_limit_per_s: Seconds = 0.0  # requests per second; beyond: 429 (0: none)
    carrier_suspended_iccids: Annotated[frozenset[str], NoDecode] = frozenset()
    carrier_seed: int | None = None

    # Usage reports on carrier.usage.v1, as the broker principal `carrier` (KAFKA_USERNAME,
    # KAFKA_PASSWORD): one per active line every CARRIER_USAGE_INTERVAL_S (0: none),
    # CARRIER_USAGE_MEAN_MB on average per line and interval.
    carrier_usage_interval_s: Seconds = 0.0
    carrier_usage_mean_mb: Annotated[int, Field(ge=0)] = 40

    @field_validator("carrier_suspended_iccids", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value
