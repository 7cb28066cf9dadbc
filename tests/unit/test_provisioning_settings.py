import pytest
from pydantic import ValidationError

from services.carrier_simulator.settings import CarrierSimulatorSettings
from services.provisioning.app import build_app, settings
from services.provisioning.balances import StackingRule
from services.provisioning.partner_api import PartnerApiCarrier
from services.provisioning.provisioning import Provisioner
from services.provisioning.settings import ProvisioningSettings
from shared.settings import ServiceSettings


def test_the_defaults_extend_validity_and_retry_five_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("STACKING_RULE", "CARRIER_MAX_ATTEMPTS", "RETRY_INTERVAL_S", "HTTP_PORT"):
        monkeypatch.delenv(var, raising=False)
    defaults = settings()
    assert defaults.service_name == "provisioning"
    assert defaults.port == 8003
    assert defaults.stacking_rule is StackingRule.EXTEND
    assert defaults.carrier_max_attempts == 5
    assert defaults.retry_interval_s == 0.5


def test_environment_variables_choose_the_rule_and_the_carrier_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STACKING_RULE", "reset")
    monkeypatch.setenv("CARRIER_API_BASE", "https://partners-api.example")
    monkeypatch.setenv("CARRIER_CLIENT_ID", "our-client")
    monkeypatch.setenv("CARRIER_CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("CARRIER_TIMEOUT_S", "2.5")
    chosen = ProvisioningSettings()
    assert chosen.stacking_rule is StackingRule.RESET
    assert (chosen.carrier_api_base, chosen.carrier_client_id) == (
        "https://partners-api.example", "our-client",
    )  # fmt: skip
    assert chosen.carrier_client_secret.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(chosen)
    assert chosen.carrier_timeout_s == 2.5


def test_by_default_provisioning_talks_to_the_local_simulator_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("CARRIER_API_BASE", "CARRIER_CLIENT_ID", "CARRIER_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    ours, theirs = ProvisioningSettings(), CarrierSimulatorSettings()
    assert ours.carrier_api_base == f"http://127.0.0.1:{theirs.port}"
    assert ours.carrier_client_id == theirs.carrier_client_id
    assert ours.carrier_client_secret == theirs.carrier_client_secret


def test_a_timeout_of_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARRIER_TIMEOUT_S", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        ProvisioningSettings()


def test_the_simulator_reads_its_behaviour_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARRIER_SUSPENDED_ICCIDS", " 8944500102198304826, 8944500102198304834 ,")
    monkeypatch.setenv("CARRIER_TIMEOUT_RATE", "0.25")
    monkeypatch.setenv("CARRIER_RATE_LIMIT_PER_S", "50")
    chosen = CarrierSimulatorSettings()
    assert chosen.carrier_suspended_iccids == {"8944500102198304826", "8944500102198304834"}
    assert (chosen.carrier_timeout_rate, chosen.carrier_rate_limit_per_s) == (0.25, 50)
    monkeypatch.setenv("CARRIER_TRANSIENT_FAILURE_RATE", "1.5")
    with pytest.raises(ValueError, match="less than or equal to 1"):
        CarrierSimulatorSettings()


def test_the_app_is_built_from_plain_settings_with_a_carrier_and_the_rules() -> None:
    app = build_app(
        ServiceSettings(service_name="provisioning", database_url="sqlite+aiosqlite://")
    )
    provisioner = app.state.provisioner
    assert isinstance(provisioner, Provisioner)
    assert app.state.broker.context.get("provisioner") is provisioner
    assert provisioner.retry.max_attempts == app.state.settings.carrier_max_attempts
    assert isinstance(provisioner.carrier, PartnerApiCarrier)


def test_an_in_flight_window_no_longer_than_a_call_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARRIER_TIMEOUT_S", "5")
    monkeypatch.setenv("CARRIER_IN_FLIGHT_S", "5")
    with pytest.raises(ValidationError, match="CARRIER_IN_FLIGHT_S"):
        ProvisioningSettings()
