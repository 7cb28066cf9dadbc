"""Builds the provisioning service: its broker, database, HTTP API, the carrier's API
client and the retrier."""

from pathlib import Path

from fastapi import FastAPI

from services.provisioning import api, handlers
from services.provisioning.alerts import AlertRules
from services.provisioning.line_sweeper import sweep_lines
from services.provisioning.partner_api import PartnerApiCarrier
from services.provisioning.provisioning import PROVISIONER, Provisioner
from services.provisioning.renewal_policy import RenewalPolicy
from services.provisioning.retrier import retry_and_settle
from services.provisioning.settings import ProvisioningSettings
from services.provisioning.topup_states import RetryPolicy
from shared import topics
from shared.late_answers import LateAnswers
from shared.service import build_service_app
from shared.settings import ServiceSettings, specialise


def settings() -> ProvisioningSettings:
    return ProvisioningSettings()


def build_app(service_settings: ServiceSettings | None = None) -> FastAPI:
    config = specialise(service_settings, ProvisioningSettings)
    carrier = PartnerApiCarrier.connect(
        config.carrier_api_base,
        config.carrier_client_id,
        config.carrier_client_secret,
        config.carrier_timeout_s,
    )

    late = LateAnswers.of(config, config.service_name)

    app = build_service_app(
        config,
        migrations=Path(__file__).parent / "migrations",
        kafka_router=handlers.router,
        topics=topics.ALL_TOPICS,
        http_router=api.router,
        background=[
            retry_and_settle,
            sweep_lines,
            # At shutdown the calls still out finish first, then their client closes.
            late.closing(config.carrier_timeout_s, carrier.aclose),
        ],
    )
    provisioner = Provisioner(
        carrier=carrier,
        stacking_rule=config.stacking_rule,
        catalog_path=config.catalog_path,
        retry=RetryPolicy(
            max_attempts=config.carrier_max_attempts,
            backoff_base_s=config.retry_backoff_base_s,
            backoff_max_s=config.retry_backoff_max_s,
            grace_s=config.new_grace_s,
            in_flight_s=config.carrier_in_flight_s,
            interval_s=config.retry_interval_s,
        ),
        alerts=AlertRules(
            data_used_percent=config.alert_data_used_percent,
            days_before_expiry=config.alert_days_before_expiry,
        ),
        renewal=RenewalPolicy(
            max_attempts=config.auto_renewal_max_attempts,
            retry_delay_s=config.auto_renewal_retry_delay_s,
        ),
        sweep_interval_s=config.line_sweep_interval_s,
        late=late,
    )
    app.state.provisioner = provisioner
    app.state.broker.context.set_global(PROVISIONER, provisioner)
    return app
