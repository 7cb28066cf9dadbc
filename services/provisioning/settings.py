"""Provisioning's settings: the common ones plus the stacking rule, the carrier
simulator's behaviour and the retry policy, each an environment variable of the
same name in upper case (`STACKING_RULE=reset`, `CARRIER_SUSPENDED_ICCIDS=89...,89...`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.provisioning.balances import StackingRule
from shared.settings import ServiceSettings

SERVICE = "provisioning"

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]


class ProvisioningSettings(ServiceSettings):
    service_name: str = SERVICE
    stacking_rule: StackingRule = StackingRule.EXTEND

    # The simulated carrier. Failures are off by default so that a plain run (and
    # the other services' tests) is deterministic; set the rates to see retries.
    carrier_latency_ms: Annotated[float, Field(ge=0.0)] = 150.0
    carrier_transient_failure_rate: Rate = 0.0
    carrier_timeout_rate: Rate = 0.0
    carrier_timeout_applied_rate: Rate = 0.5  # of the timeouts, how many applied anyway
    carrier_suspended_iccids: Annotated[frozenset[str], NoDecode] = frozenset()
    carrier_seed: int | None = None  # fixes the simulator's dice, for a reproducible run

    carrier_max_attempts: int = Field(default=5, ge=1)
    retry_interval_s: Annotated[float, Field(gt=0.0)] = 0.5
    retry_backoff_base_s: Seconds = 1.0
    retry_backoff_max_s: Seconds = 60.0
    # How long a carrier call may be in flight before the retrier takes the top-up
    # over (a crash between the two transactions leaves it NEW).
    new_grace_s: Seconds = 30.0

    @field_validator("carrier_suspended_iccids", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value
