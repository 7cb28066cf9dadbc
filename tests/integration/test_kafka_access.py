"""Kafka lets each party write only what it owns (shared/kafka_access.py), on the real
broker with its SASL/SCRAM users and ACLs: an internal system that places orders cannot
forge the payment or the top-up that would complete its own order for free."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from pydantic import SecretStr

from services.orders.app import build_app
from shared import topics
from shared.events import LineToppedUp, Money, PaymentCaptured, order_id_for
from shared.kafka_access import PRINCIPALS, PUBLISHER, KafkaClient, Principal
from shared.topic_layout import ensure_topics
from tests.factories import order_request
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import messages_about, publish_as, service_running
from tests.integration.test_orders_on_real_infra import order_state

pytestmark = pytest.mark.integration


@pytest.fixture
async def secured(kafka: KafkaUnderTest) -> KafkaUnderTest:
    """The session's broker, with its ACLs on and every topic of the contract laid out."""
    if not kafka.secured:
        pytest.skip(f"{kafka.description}: no users and ACLs (set KAFKA_ADMIN_PASSWORD)")
    await ensure_topics(kafka.client(), topics.ALL_TOPICS)
    return kafka


def captured(charge: dict[str, Any], reference: str) -> dict[str, Any]:
    """The PaymentCaptured that answers `charge`, as payments would publish it."""
    event = PaymentCaptured(
        order_id=charge["order_id"],
        iccid=charge["iccid"],
        amount=Money.model_validate(charge["amount"]),
        fee=Money.model_validate(charge["fee"]),
        provider_reference=reference,
    )
    return event.model_dump(mode="json")


@pytest.mark.parametrize("topic", [topics.PAYMENTS_EVENTS, topics.PROVISIONING_EVENTS])
async def test_a_publisher_cannot_write_the_payments_or_provisioning_events(
    secured: KafkaUnderTest, topic: str
) -> None:
    request = order_request()
    event = LineToppedUp(
        order_id=order_id_for(request["request_id"]), iccid=request["iccid"], data_mb=5120,
        valid_until="2027-01-01T00:00:00Z", data_remaining_mb=5120,
    )  # fmt: skip

    with pytest.raises(TopicAuthorizationFailedError):
        await publish_as(secured.client(PUBLISHER), topic, event.model_dump(mode="json"))


async def test_a_publisher_may_place_an_order_and_read_the_answers(
    secured: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(build_app, "orders", secured, postgres):
        request = order_request()
        await publish_as(secured.client(PUBLISHER), topics.ORDERS_COMMANDS, request)

        as_publisher = KafkaUnderTest(
            secured.bootstrap_servers, "the publisher", passwords=secured.passwords
        )
        order_id = order_id_for(request["request_id"])
        [answer] = await messages_about(as_publisher, topics.ORDERS_EVENTS, order_id)
    assert answer["type"] == "OrderPlaced"


async def test_a_forged_payment_captured_from_an_unauthorised_client_never_reaches_orders(
    secured: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(build_app, "orders", secured, postgres) as orders:
        request = order_request()
        order_id = order_id_for(request["request_id"])
        await publish_as(secured.client(PUBLISHER), topics.ORDERS_COMMANDS, request)
        [charge] = await messages_about(secured, topics.PAYMENTS_COMMANDS, order_id)

        with pytest.raises(TopicAuthorizationFailedError):
            await publish_as(
                secured.client(PUBLISHER), topics.PAYMENTS_EVENTS, captured(charge, "forged")
            )
        with pytest.raises(KafkaConnectionError):  # no credentials: not even let in
            await publish_as(
                KafkaClient(secured.bootstrap_servers),
                topics.PAYMENTS_EVENTS,
                captured(charge, "x"),
            )

        on_payment_events = await messages_about(
            secured, topics.PAYMENTS_EVENTS, order_id, count=0, settle=2.0
        )
        assert on_payment_events == []
        assert (await order_state(orders, order_id))["state"] == "PAYMENT_PENDING"
        assert (
            await messages_about(
                secured, topics.PROVISIONING_COMMANDS, order_id, count=0, settle=0.5
            )
            == []
        )

        # The same event from payments' own principal is taken: the refusal stopped it.
        await publish_as(secured.client("payments"), topics.PAYMENTS_EVENTS, captured(charge, "p1"))
        [top_up] = await messages_about(secured, topics.PROVISIONING_COMMANDS, order_id)
    assert top_up["type"] == "TopUpLine"


@pytest.mark.parametrize("party", PRINCIPALS, ids=lambda p: p.name)
async def test_each_principal_writes_exactly_the_topics_the_table_gives_it(
    secured: KafkaUnderTest, party: Principal, undecodable: list[tuple[str, int, int]]
) -> None:
    producer = AIOKafkaProducer(**secured.options(party.name), acks="all")
    await producer.start()
    written, refused = [], []
    try:
        for topic in topics.ALL_TOPICS:
            try:
                sent = await producer.send_and_wait(topic, b"acl check", key=b"acl-check")
            except TopicAuthorizationFailedError:
                refused.append(topic)
                continue
            written.append(topic)
            undecodable.append((topic, sent.partition, sent.offset))  # removed afterwards
    finally:
        await producer.stop()
    assert written == [t for t in topics.ALL_TOPICS if t in party.may_write]
    assert set(refused) == set(topics.ALL_TOPICS) - set(party.may_write)


async def test_a_wrong_password_is_refused(
    secured: KafkaUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = KafkaClient(secured.bootstrap_servers, PUBLISHER, SecretStr("not-the-password"))

    with caplog.at_level(logging.ERROR), pytest.raises(KafkaConnectionError):
        await publish_as(wrong, topics.ORDERS_COMMANDS, order_request())
    assert "SaslAuthenticationFailed" in caplog.text
