"""What a publisher of PlaceOrder can count on, end to end: a card number is refused and
goes no further; a repeated request gets the order's current answer, the very message;
the same request_id asking for another order is refused as such."""

from __future__ import annotations

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared import topics
from tests.credentials import RENEWER
from tests.e2e.test_saga_outcomes import Services, final_order, publish
from tests.factories import order_request
from tests.infra import KafkaUnderTest
from tests.integration.harness import Record, messages_about, records_where

pytestmark = pytest.mark.e2e


async def test_a_card_number_in_the_token_is_refused_and_travels_no_further(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    request = order_request(payment_token="card: 4242.4242.4242.4242")
    order_id = await publish(producer, request)
    [rejected] = await messages_about(kafka, topics.ORDERS_EVENTS, order_id)
    assert rejected["reason"] == "card_number_not_accepted"
    after = order_request(iccid=request["iccid"])  # behind it on the same partition
    assert (await final_order(services, await publish(producer, after)))["state"] == "COMPLETED"
    assert await messages_about(kafka, topics.PAYMENTS_COMMANDS, order_id, count=0, settle=2) == []
    for topic in (topics.ORDERS_EVENTS, topics.PAYMENTS_COMMANDS, topics.ORDERS_COMMANDS + ".dlt"):
        with pytest.raises(AssertionError, match="0 of 1 records"):  # read for 3 s: none
            await records_where(kafka, topic, holds_the_card_number, within=3)
    for process in services.values():
        assert process.log_path is not None
        assert "4242.4242.4242.4242" not in process.log_path.read_text(errors="replace")


async def test_a_request_repeated_after_its_order_ended_gets_the_outcome_again_as_it_was(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    request = order_request()
    order_id = await publish(producer, request)
    assert (await final_order(services, order_id))["state"] == "COMPLETED"
    placed, completed = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=2)

    await publish(producer, request)
    answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=3, settle=2)
    assert answers == [placed, completed, completed], "the same message, event_id and all"


async def test_a_request_id_reused_for_another_order_is_refused_and_the_first_goes_on(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    request = order_request(package_id="eu-1gb-7d")
    order_id = await publish(producer, request)
    await publish(producer, {**request, "package_id": "eu-5gb-30d"})
    assert (await final_order(services, order_id))["state"] == "COMPLETED"
    answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=3, settle=2)
    [reused] = [a for a in answers if a["type"] == "OrderRejected"]
    assert reused["reason"] == "request_id_reused"
    assert "package_id" in reused["message"]
    charges = await messages_about(kafka, topics.PAYMENTS_COMMANDS, order_id, settle=2)
    assert len(charges) == 1
    assert charges[0]["amount"]["amount_minor"] == 500, "the first order's price, charged once"


def holds_the_card_number(record: Record) -> bool:
    return b"4242.4242" in (record.value or b"") or b"4242424242424242" in (record.value or b"")


async def test_the_catalog_is_readable_over_http_and_prices_what_orders_charge(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    async with httpx.AsyncClient(headers=RENEWER, base_url=services["orders"].base_url) as client:
        catalog = (await client.get("/catalog")).json()
    packages = {p["package_id"]: p for p in catalog["packages"].values()}
    assert "rounded half up" in catalog["pricing"]
    assert catalog["payment_methods"]["card"]["percent_bp"] >= 0
    price = packages["eu-5gb-30d"]["prices"]["EUR"]
    card = catalog["payment_methods"]["paypal"]  # a fee to reckon: percent and a fixed part
    fee = (price * card["percent_bp"] + 5_000) // 10_000 + card["fixed"].get("EUR", 0)

    request = order_request(package_id="eu-5gb-30d", currency="EUR", payment_method="paypal")
    order_id = await publish(producer, request)
    [placed] = await messages_about(kafka, topics.ORDERS_EVENTS, order_id)
    assert placed["catalog_version"] == catalog["version"]
    assert placed["total"] == {"amount_minor": price + fee, "currency": "EUR"}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iccid": "8" * 40}, "malformed_request"),  # past its bound: cut short in the answer
        ({"iccid": "89\x00" * 4}, "invalid_iccid"),  # a NUL PostgreSQL cannot store
        ({"payment_token": "tok_\x00visa"}, "malformed_request"),
        ({"package_id": "nope\x00"}, "unknown_package"),
    ],
)
async def test_a_request_with_a_usable_request_id_is_always_answered_and_again_the_same(
    services: Services,
    producer: AIOKafkaProducer,
    kafka: KafkaUnderTest,
    changes: dict[str, str],
    reason: str,
) -> None:
    request = {**order_request(), **changes}
    order_id = await publish(producer, request)
    [first] = await messages_about(kafka, topics.ORDERS_EVENTS, order_id)
    assert first["reason"] == reason
    await publish(producer, request)
    answers = await messages_about(kafka, topics.ORDERS_EVENTS, order_id, count=2)
    assert answers == [first, first], "the same rejection, event_id and all"
