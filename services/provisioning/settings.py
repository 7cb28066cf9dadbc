"""Provisioning's settings: the common ones plus the stacking rule, the carrier
simulator's behaviour and the retry policy, each an environment variable of the
same name in upper case (`STACKING_RULE=reset`, `CARRIER_SUSPENDED_ICCIDS=89...,89...`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from services.orders.catalog import DEFAULT_CATALOG
from services.provisioning.balances import StackingRule
from shared.settings import ServiceSettings

SERVICE = "provisioning"

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]


class ProvisioningSettings(ServiceSettings):
    service_name: str = SERVICE
    stacking_rule: StackingRule = StackingRule.EXTEND
    # What an auto-renewal may be set to (CATALOG_PATH, as for orders).
    catalog_path: Path = DEFAULT_CATALOG

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

    # Usage the simulated carrier reports for its active lines (carrier.usage.v1): one
    # report per line every CARRIER_USAGE_INTERVAL_S (0: none; `make run` turns it on),
    # CARRIER_USAGE_MEAN_MB on average (jittered; some periods idle).
    carrier_usage_interval_s: Seconds = 0.0
    carrier_usage_mean_mb: Annotated[int, Field(ge=0)] = 40
    # The carrier is a party of its own on the broker (shared/kafka_access.py): with a
    # username its reports go out as it; without, through the service's own client.
    carrier_kafka_username: str = ""
    carrier_kafka_password: SecretStr = SecretStr("")

    # Alerts (docs/usage-alerts.md): each fires once per threshold per package cycle.
    alert_data_used_percent: Annotated[tuple[int, ...], NoDecode] = (75, 90)
    alert_days_before_expiry: Annotated[tuple[int, ...], NoDecode] = (3, 1)
    # How often lines are checked for time-based alerts, expiry and due renewal retries.
    line_sweep_interval_s: Annotated[float, Field(gt=0.0)] = 30.0

    # Auto-renewal: a declined renewal is tried again after the delay, this many
    # renewal orders in all per crossing, then auto-renewal pauses.
    auto_renewal_max_attempts: int = Field(default=3, ge=1)
    auto_renewal_retry_delay_s: Seconds = 600.0

    @field_validator("carrier_suspended_iccids", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("alert_data_used_percent", "alert_days_before_expiry", mode="before")
    @classmethod
    def _comma_separated_numbers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(int(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("alert_data_used_percent")
    @classmethod
    def _percentages(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 0 < p < 100 for p in value):
            raise ValueError(
                "ALERT_DATA_USED_PERCENT: each between 1 and 99 (100 is data_exhausted)"
            )
        return tuple(sorted(set(value)))

    @field_validator("alert_days_before_expiry")
    @classmethod
    def _days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in value):
            raise ValueError("ALERT_DAYS_BEFORE_EXPIRY: each at least 1 (0 is validity_ended)")
        return tuple(sorted(set(value), reverse=True))
