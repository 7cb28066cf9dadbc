"""How `make run` and the test stacks pair each simulator with the service that calls it."""

from deploy.local.outside_world import (
    CARRIER_SIMULATOR,
    STRIPE_SIMULATOR,
    outside_world_for,
    simulated,
)
from deploy.local.stack import wanted_ports

URLS = {
    STRIPE_SIMULATOR: "http://127.0.0.1:8010",
    CARRIER_SIMULATOR: "http://127.0.0.1:8011",
    "payments": "http://127.0.0.1:8002",
}


def test_each_service_and_its_simulator_share_the_same_secrets() -> None:
    world = outside_world_for(URLS)
    payments, stripe = world.env("payments"), world.env(STRIPE_SIMULATOR)
    provisioning, carrier = world.env("provisioning"), world.env(CARRIER_SIMULATOR)
    for name in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"):
        assert payments[name] == stripe[name]
    for name in ("CARRIER_CLIENT_ID", "CARRIER_CLIENT_SECRET"):
        assert provisioning[name] == carrier[name]
    assert payments["STRIPE_API_BASE"] == URLS[STRIPE_SIMULATOR]
    assert provisioning["CARRIER_API_BASE"] == URLS[CARRIER_SIMULATOR]
    assert stripe["STRIPE_WEBHOOK_URL"] == "http://127.0.0.1:8002/webhooks/stripe"
    assert world.env("orders") == {}


def test_every_stack_gets_secrets_of_its_own_never_a_known_default() -> None:
    first, second = outside_world_for(URLS), outside_world_for(URLS)
    assert first.stripe_webhook_secret != second.stripe_webhook_secret
    assert first.carrier_client_secret != second.carrier_client_secret
    assert first.stripe_webhook_secret.startswith("whsec_")
    assert len(first.stripe_webhook_secret) > 30
    assert first.stripe_webhook_secret not in repr(first), "never shown"
    assert first.carrier_client_secret not in repr(first)


def test_webhooks_go_to_every_payments_process_in_turn() -> None:
    world = outside_world_for(
        URLS | {"payments": ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]}
    )
    assert world.env(STRIPE_SIMULATOR)["STRIPE_WEBHOOK_URL"] == (
        "http://127.0.0.1:9001/webhooks/stripe,http://127.0.0.1:9002/webhooks/stripe"
    )


def test_an_api_pointed_elsewhere_is_not_simulated_and_its_client_keeps_the_users_values() -> None:
    env = {"STRIPE_API_BASE": "https://api.stripe.com", "STRIPE_API_KEY": "sk_test_mine"}
    assert simulated(env) == (CARRIER_SIMULATOR,)
    world = outside_world_for({name: url for name, url in URLS.items() if name != STRIPE_SIMULATOR})
    assert world.env("payments") == {}, "the user's STRIPE_* reach payments untouched"
    assert "STRIPE_SIMULATOR_PORT" not in wanted_ports(env, "sqlite")
    assert "CARRIER_SIMULATOR_PORT" in wanted_ports(env, "sqlite")
