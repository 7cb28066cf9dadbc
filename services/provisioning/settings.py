"""Provisioning's settings: the common ones plus the stacking rule, the carrier's API and
the retry policy, each an environment variable of the same name in upper case
(`STACKING_RULE=reset`, `CARRIER_API_BASE=https://...`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from services.orders.catalog import DEFAULT_CATALOG
from services.provisioning.balances import StackingRule
from shared.late_answers import LateAnswerSettings
from shared.settings import ServiceSettings

SERVICE = "provisioning"
# The credentials the local carrier simulator accepts when none are given (make run
# passes generated ones to both); a real carrier's come from CARRIER_CLIENT_ID/_SECRET.
LOCAL_CLIENT_ID = "topup-local"
LOCAL_CLIENT_SECRET = "topup-local-secret"  # noqa: S105 - a local default, not a secret

Seconds = Annotated[float, Field(ge=0.0)]


class ProvisioningSettings(ServiceSettings, LateAnswerSettings):
    service_name: str = SERVICE
    stacking_rule: StackingRule = StackingRule.EXTEND
    # What an auto-renewal may be set to (CATALOG_PATH, as for orders).
    catalog_path: Path = DEFAULT_CATALOG

    # The carrier's partner API (services/provisioning/partner_api.py). The defaults are
    # the local simulator's (services/carrier_simulator/), so that a plain run needs no account.
    carrier_api_base: str = "http://127.0.0.1:8011"
    carrier_client_id: str = LOCAL_CLIENT_ID
    carrier_client_secret: SecretStr = SecretStr(LOCAL_CLIENT_SECRET)
    carrier_timeout_s: Annotated[float, Field(gt=0.0)] = 5.0

    carrier_max_attempts: int = Field(default=5, ge=1)
    retry_interval_s: Annotated[float, Field(gt=0.0)] = 0.5
    retry_backoff_base_s: Seconds = 1.0
    retry_backoff_max_s: Seconds = 60.0
    # How long a carrier call may be in flight before the retrier takes the top-up
    # over (a crash between the two transactions leaves it NEW).
    new_grace_s: Seconds = 30.0
    # How long a top-up sent to the carrier may still be placed by it (a slow request is
    # not a lost one): the key is not sent again before, whatever the carrier's order
    # list says. Longer than the carrier takes to act on a request or give it up.
    carrier_in_flight_s: Seconds = 120.0

    # Alerts (docs/usage-alerts.md): each fires once per threshold per package cycle.
    alert_data_used_percent: Annotated[tuple[int, ...], NoDecode] = (75, 90)
    alert_days_before_expiry: Annotated[tuple[int, ...], NoDecode] = (3, 1)
    # How often lines are checked for time-based alerts, expiry and due renewal retries.
    line_sweep_interval_s: Annotated[float, Field(gt=0.0)] = 30.0

    # Auto-renewal: a declined renewal is tried again after the delay, this many
    # renewal orders in all per crossing, then auto-renewal pauses.
    auto_renewal_max_attempts: int = Field(default=3, ge=1)
    auto_renewal_retry_delay_s: Seconds = 600.0

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

    @model_validator(mode="after")
    def _in_flight_outlasts_a_call(self) -> ProvisioningSettings:
        # Shorter than our own wait, the rule would let a top-up we merely stopped waiting
        # for be sent again while the carrier may still place it: a line topped up twice.
        if self.carrier_in_flight_s <= self.carrier_timeout_s:
            raise ValueError(
                f"CARRIER_IN_FLIGHT_S ({self.carrier_in_flight_s:g}) must be longer than "
                f"CARRIER_TIMEOUT_S ({self.carrier_timeout_s:g}), and than the carrier "
                "takes to act on a request or give it up"
            )
        return self
