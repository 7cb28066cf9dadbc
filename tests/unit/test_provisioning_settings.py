import pytest

from services.provisioning.app import build_app, settings
from services.provisioning.balances import StackingRule
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


def test_environment_variables_choose_the_rule_and_the_suspended_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STACKING_RULE", "reset")
    monkeypatch.setenv("CARRIER_SUSPENDED_ICCIDS", " 8944500102198304826, 8944500102198304834 ,")
    monkeypatch.setenv("CARRIER_TIMEOUT_RATE", "0.25")
    chosen = ProvisioningSettings()
    assert chosen.stacking_rule is StackingRule.RESET
    assert chosen.carrier_suspended_iccids == {"8944500102198304826", "8944500102198304834"}
    assert chosen.carrier_timeout_rate == 0.25


def test_a_rate_above_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARRIER_TRANSIENT_FAILURE_RATE", "1.5")
    with pytest.raises(ValueError, match="less than or equal to 1"):
        ProvisioningSettings()


def test_the_app_is_built_from_plain_settings_with_a_carrier_and_the_rules() -> None:
    app = build_app(
        ServiceSettings(service_name="provisioning", database_url="sqlite+aiosqlite://")
    )
    provisioner = app.state.provisioner
    assert isinstance(provisioner, Provisioner)
    assert app.state.broker.context.get("provisioner") is provisioner
    assert provisioner.retry.max_attempts == app.state.settings.carrier_max_attempts
