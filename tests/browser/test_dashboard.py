"""The operator dashboard in a real headless Chromium, on the real stack with real
traffic: what an operator sees in each panel, and what a replay leaves behind."""

from __future__ import annotations

import re
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from playwright.async_api import Locator, Page, expect

from shared import topics
from shared.events import Money, PaymentCaptured
from tests.browser.screenshots import screenshot
from tests.browser.stack import Stack, Traffic, new_dead_letter
from tests.factories import random_iccid
from tests.integration.harness import dead_letter_topic_taking, produce

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SAGA_MESSAGES = [
    "PlaceOrder", "OrderPlaced", "ChargePayment", "PaymentCaptured",
    "TopUpLine", "LineToppedUp", "OrderCompleted",
]  # fmt: skip


EUROS = Money(amount_minor=1500, currency="EUR")


def topic_row(page: Page, topic: str) -> Locator:
    return page.locator(f'[data-testid="topic-row"][data-topic="{topic}"]')


async def end_offset(stack: Stack, topic: str) -> int:
    """The topic's end offset, summed over partitions, as the broker has it."""
    admin = AIOKafkaAdminClient(**stack.kafka.options())
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(**stack.kafka.options())
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return sum(ends.values())


async def test_a_wrong_token_is_refused_with_a_visible_message(page: Page, stack: Stack) -> None:
    await page.goto(f"{stack.operator.base_url}/#token=not-a-token")

    await expect(page.get_by_test_id("signin-error")).to_contain_text("Token refused")
    await expect(page.get_by_test_id("panel-topics")).to_be_hidden()
    await screenshot(page, "01-wrong-token")

    await page.get_by_test_id("token-input").fill(stack.token)
    await page.get_by_test_id("signin-button").click()
    await expect(page.get_by_test_id("operator")).to_have_text(f"signed in as {stack.name}")


async def test_the_link_make_run_prints_signs_in_and_takes_the_token_out_of_the_address_bar(
    signed_in: Page, stack: Stack
) -> None:
    assert stack.token not in signed_in.url
    await expect(signed_in.get_by_test_id("panel-topics")).to_be_visible()
    await screenshot(signed_in, "02-signed-in")


async def test_the_topics_panel_shows_every_topic_its_end_offset_and_consumer_lag(
    signed_in: Page, stack: Stack, traffic: Traffic
) -> None:
    commands = topic_row(signed_in, topics.ORDERS_COMMANDS)
    end = await end_offset(stack, topics.ORDERS_COMMANDS)

    await expect(commands.get_by_test_id("end-offset")).to_have_text(str(end))
    # Every group with offsets on the topic is listed (other tests' readers too): orders' own.
    orders_group = f"orders:{topics.ORDERS_COMMANDS}"
    await expect(commands.get_by_test_id("group").filter(has_text=orders_group)).to_have_text(
        re.compile(rf"{re.escape(orders_group)}\s*lag 0")
    )
    for topic in topics.ALL_TOPICS:
        await expect(topic_row(signed_in, topic)).to_be_visible()
    dead_letters = topic_row(signed_in, topics.dead_letter_topic(topics.ORDERS_COMMANDS))
    await expect(dead_letters).to_have_class(re.compile("dead-letters-waiting"))
    await screenshot(signed_in, "03-topics", panel="topics")


def service_row(page: Page, name: str) -> Locator:
    return page.locator(f'[data-testid="service-row"][data-service="{name}"]')


async def test_the_services_panel_shows_a_stuck_partition_while_it_lasts(
    signed_in: Page, stack: Stack
) -> None:
    for name in ("orders", "payments", "provisioning"):
        await expect(service_row(signed_in, name)).to_have_attribute("data-status", "ok")
    unknown_order = PaymentCaptured(
        order_id=uuid.uuid4(), iccid=random_iccid(), amount=EUROS, fee=EUROS,
        provider_reference="p-stuck",
    )  # fmt: skip
    dead_letters = topics.dead_letter_topic(topics.PAYMENTS_EVENTS)
    async with dead_letter_topic_taking(stack.kafka, dead_letters, max_bytes=100):
        await produce(
            stack.kafka,
            topics.PAYMENTS_EVENTS,
            unknown_order.model_dump_json().encode(),
            unknown_order.iccid.encode(),
        )
        orders = service_row(signed_in, "orders")
        await expect(orders).to_have_attribute("data-status", "degraded", timeout=30_000)
        await expect(orders).to_contain_text(f"partition {topics.PAYMENTS_EVENTS}[")
        await expect(orders).to_contain_text("stuck at offset")
        await screenshot(signed_in, "00-services-degraded", panel="services")
    await expect(service_row(signed_in, "orders")).to_have_attribute(
        "data-status", "ok", timeout=90_000
    )


async def test_the_sagas_panel_counts_completed_orders_and_shows_the_stuck_one(
    signed_in: Page, traffic: Traffic
) -> None:
    completed = signed_in.locator('[data-testid="saga-count"][data-state="COMPLETED"]')
    await expect(completed).to_contain_text("COMPLETED")
    assert int((await completed.inner_text()).split()[0]) >= len(traffic.completed)

    stuck = signed_in.get_by_test_id("stuck-row").filter(has_text=str(traffic.stuck.order_id))
    await expect(stuck).to_contain_text("PAYMENT_PENDING")
    await expect(stuck).to_contain_text(re.compile(r"waiting for \d+ s"))
    await screenshot(signed_in, "04-sagas", panel="sagas")


@pytest.mark.parametrize("by", ["order_id", "request_id", "iccid"])
async def test_the_timeline_finds_an_order_by_its_id_its_request_id_or_its_line(
    signed_in: Page, traffic: Traffic, by: str
) -> None:
    placed = traffic.completed[0]  # eu-5gb-30d, EUR, by card: 15.00 EUR
    await signed_in.get_by_test_id("search-input").fill(str(getattr(placed, by)))
    await signed_in.get_by_test_id("search-button").click()

    order = signed_in.get_by_test_id("order").filter(has_text=str(placed.order_id))
    await expect(order.get_by_test_id("order-state")).to_have_text("COMPLETED")
    await expect(order).to_contain_text("15.00 EUR")
    await expect(order.get_by_test_id("message-type")).to_contain_text(SAGA_MESSAGES)
    await screenshot(signed_in, f"05-timeline-by-{by}", panel="timeline")


async def test_a_search_that_matches_nothing_says_so(signed_in: Page) -> None:
    await signed_in.get_by_test_id("search-input").fill("req-that-was-never-made")
    await signed_in.get_by_test_id("search-button").click()

    await expect(signed_in.get_by_test_id("search-results")).to_contain_text(
        "No order matches “req-that-was-never-made”"
    )


async def test_replaying_a_dead_letter_shows_who_replayed_it_and_the_audit_names_them(
    signed_in: Page, stack: Stack, traffic: Traffic
) -> None:
    letter = await new_dead_letter(stack)
    row = signed_in.locator(f'[data-testid="dead-letter-row"][data-id="{letter["id"]}"]')
    await expect(row).to_contain_text("undecodable")
    await expect(row).to_contain_text(topics.dead_letter_topic(topics.ORDERS_COMMANDS))
    await screenshot(signed_in, "06-dead-letters", panel="dead-letters")

    await row.get_by_role("button", name="Replay").click()

    await expect(row).to_contain_text(f"replayed by {stack.name}")
    audited = signed_in.get_by_test_id("audit-row").filter(has_text=letter["id"])
    await expect(audited).to_contain_text(stack.name)
    await screenshot(signed_in, "07-replayed", panel="dead-letters")
    await screenshot(signed_in, "08-audit", panel="audit")
    await screenshot(signed_in, "09-dashboard")


async def test_replay_all_asks_first_then_replays_every_waiting_dead_letter(
    signed_in: Page, stack: Stack, traffic: Traffic
) -> None:
    letters = [await new_dead_letter(stack), await new_dead_letter(stack)]
    rows = [
        signed_in.locator(f'[data-testid="dead-letter-row"][data-id="{letter["id"]}"]')
        for letter in letters
    ]
    for row in rows:
        await expect(row.get_by_role("button", name="Replay")).to_be_visible()

    await signed_in.get_by_role("button", name="Replay all").click()
    await expect(signed_in.get_by_test_id("panel-dead-letters")).to_contain_text(
        "Replay every dead letter?"
    )
    await screenshot(signed_in, "10-replay-all-asks", panel="dead-letters")
    await signed_in.get_by_role("button", name="Yes, replay all").click()

    for row in rows:
        await expect(row).to_contain_text(f"replayed by {stack.name}")
    await expect(signed_in.get_by_test_id("replay-message")).to_contain_text(
        f"replayed by {stack.name}"
    )
    everything = signed_in.locator("td", has_text=re.compile(r"^all$"))
    audited = signed_in.get_by_test_id("audit-row").filter(has=everything)
    await expect(audited.first).to_contain_text(stack.name)
