"""The `topup` command line on the same running stack as the dashboard: an operator's
commands go through the operator service with a token (so replays are audited), a
publisher's straight to Kafka."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from services.cli.demo import EXPECTED
from services.cli.main import app
from shared import topics
from shared.events import Money, PaymentCaptured
from shared.kafka_access import PUBLISHER
from tests.browser.stack import (
    Placed,
    Stack,
    Traffic,
    eventually,
    listed_dead_letter,
    publish,
    reaches,
    send,
)
from tests.cli_output import rows, succeeded
from tests.credentials import CARE_TOKEN
from tests.factories import order_request
from tests.infra import KafkaUnderTest
from tests.integration.harness import messages_about

pytestmark = pytest.mark.e2e

SAGA_MESSAGES = ["PlaceOrder", "OrderPlaced", "ChargePayment", "PaymentCaptured",
                 "TopUpLine", "LineToppedUp", "OrderCompleted"]  # fmt: skip


async def topup(stack: Stack, *args: str, **env: str) -> Result:
    """Run `topup ARGS` as an operator on this stack would (off the test's event loop:
    the commands run asyncio themselves)."""
    environment = {
        "TOPUP_OPERATOR_URL": stack.operator.base_url,
        "TOPUP_OPERATOR_TOKEN": stack.token,
        "TOPUP_API_TOKEN": CARE_TOKEN,  # the services' APIs: an internal system's token
        **stack.kafka.env(PUBLISHER),  # the CLI places orders as an internal system
        "ORDERS_URL": stack.services["orders"].base_url,
        "COLUMNS": "250",
        **env,
    }
    return await asyncio.to_thread(lambda: CliRunner().invoke(app, list(args), env=environment))


async def test_order_timeline_shows_every_message_of_an_order_in_time_order(
    stack: Stack, traffic: Traffic
) -> None:
    placed = traffic.completed[0]
    output = succeeded(await topup(stack, "order", "timeline", str(placed.order_id)))

    assert f"order {placed.order_id}  COMPLETED" in output
    types = [row[3] for row in rows(output)]
    assert [t for t in types if t in SAGA_MESSAGES] == SAGA_MESSAGES


async def test_order_timeline_finds_an_order_by_its_line_and_shows_the_line_masked(
    stack: Stack, traffic: Traffic
) -> None:
    placed = traffic.completed[1]
    output = succeeded(await topup(stack, "order", "timeline", placed.iccid))

    assert "by iccid" in output
    assert str(placed.order_id) in output
    assert placed.iccid not in output
    assert f"{placed.iccid[:4]}" in output


async def test_lag_lists_each_consumer_group_of_each_topic(stack: Stack, traffic: Traffic) -> None:
    wanted = {
        (topics.ORDERS_COMMANDS, f"orders:{topics.ORDERS_COMMANDS}"),
        (topics.PAYMENTS_COMMANDS, f"payments:{topics.PAYMENTS_COMMANDS}"),
    }

    async def with_the_groups() -> str | None:
        # The operator samples every 2 s: a group shows once it has committed in a sample.
        output = succeeded(await topup(stack, "lag"))
        return output if wanted <= {(row[0], row[1]) for row in rows(output)} else None

    output = await eventually(with_the_groups, "the consumer groups in `topup lag`")
    assert f"{topics.dead_letter_topic(topics.ORDERS_COMMANDS)}: " in output


async def test_dlq_list_shows_a_dead_letter_with_its_reason(stack: Stack, traffic: Traffic) -> None:
    letter = traffic.dead_letter
    output = succeeded(await topup(stack, "dlq", "list", "--limit", "1000"))

    [row] = [row for row in rows(output) if row[0] == letter["id"]]
    assert row[1] == topics.ORDERS_COMMANDS
    assert row[2] == "undecodable"


async def test_a_capture_dead_lettered_before_its_order_completes_it_once_replayed_by_id(
    stack: Stack, kafka: KafkaUnderTest
) -> None:
    # The order's payment stays pending, so only the replayed capture can pay it.
    placed = Placed(order_request(payment_token="tok_pending_forever"))
    early = PaymentCaptured(
        order_id=placed.order_id, iccid=placed.iccid,
        amount=Money(amount_minor=1500, currency="EUR"), fee=Money(amount_minor=0, currency="EUR"),
        provider_reference=f"early-{uuid.uuid4().hex}",
    )  # fmt: skip
    await publish(stack, early.model_dump_json().encode(), placed.iccid, topics.PAYMENTS_EVENTS)
    letter = await listed_dead_letter(stack, lambda d: d["order_id"] == str(placed.order_id))
    assert letter["reason"] == "business_rule"

    await send(stack, placed)
    await reaches(stack, placed, {"PAYMENT_PENDING"})
    output = succeeded(await topup(stack, "dlq", "replay", "--id", letter["id"], "--yes"))

    assert f"replayed {letter['id']}" in output
    assert f"replayed 1 dead letters as {stack.name}" in output
    order = await reaches(stack, placed, {"COMPLETED"})
    assert order["captured"] == order["total"]
    audit = (await stack.api("GET", "/api/audit")).json()["entries"]
    [entry] = [e for e in audit if e["target"] == letter["id"]]
    assert (entry["operator"], entry["outcome"]) == (stack.name, "ok")

    # Replayed again: the capture is a duplicate by event_id, and nothing more happens.
    succeeded(await topup(stack, "dlq", "replay", "--id", letter["id"], "--yes"))
    top_ups = await messages_about(kafka, topics.PROVISIONING_COMMANDS, placed.order_id, settle=3.0)
    assert len(top_ups) == 1


async def test_a_refused_token_is_one_clear_line_and_no_traceback(stack: Stack) -> None:
    result = await topup(stack, "lag", TOPUP_OPERATOR_TOKEN="not-a-token")

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "refused the token" in result.output
    assert "Traceback" not in result.output


async def test_without_a_token_the_cli_says_how_to_get_one(stack: Stack, tmp_path: Path) -> None:
    nowhere = str(tmp_path / "no-token-here")
    result = await topup(
        stack, "dlq", "list", TOPUP_OPERATOR_TOKEN="", TOPUP_OPERATOR_TOKEN_FILE=nowhere
    )

    assert result.exit_code == 1
    assert result.output.startswith("error: no operator token")
    assert "var/operator-token" in result.output


async def test_the_token_file_make_run_writes_is_used_when_no_token_is_given(
    stack: Stack, tmp_path: Path
) -> None:
    token_file = tmp_path / "operator-token"
    token_file.write_text(stack.token + "\n")
    result = await topup(
        stack, "lag", TOPUP_OPERATOR_TOKEN="", TOPUP_OPERATOR_TOKEN_FILE=str(token_file)
    )

    assert f"orders:{topics.ORDERS_COMMANDS}" in succeeded(result)


async def test_demo_places_a_mix_of_orders_and_each_kind_ends_as_expected(stack: Stack) -> None:
    before = (await stack.api("GET", "/api/sagas")).json()
    demo = ["demo", "--orders", "7", "--rate", "20", "--seed", "7", "--timeout", "90"]
    output = succeeded(await topup(stack, *demo))

    outcomes = [row for row in rows(output) if row[0] in EXPECTED]
    assert {row[0] for row in outcomes} == set(EXPECTED)
    assert all(row[2] == row[1] for row in outcomes), output
    assert sum(int(row[3]) for row in outcomes) == 7
    after = (await stack.api("GET", "/api/sagas")).json()
    rejected = sum(int(row[3]) for row in outcomes if row[1] == "REJECTED")
    assert after["total"] - before["total"] == 7 - rejected  # a rejected request is no saga


async def test_order_place_publishes_a_place_order_and_follows_it_to_its_end(
    stack: Stack,
) -> None:
    placed = Placed(order_request())
    args = ["--iccid", placed.iccid, "--package", "eu-1gb-7d", "--request-id", placed.request_id]
    output = succeeded(await topup(stack, "order", "place", *args))

    assert f"published request {placed.request_id} -> order {placed.order_id}" in output
    assert f"order {placed.order_id}  COMPLETED  eu-1gb-7d" in output
    assert "= 5.00 EUR" in output
