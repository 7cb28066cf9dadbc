import io
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from shared import topics
from shared.events import UsageReported
from shared.kafka import build_broker, message_headers
from shared.logs import configure_logging, mask
from shared.settings import ServiceSettings

FULLWIDTH_ICCID = "".join(chr(0xFF10 + int(d)) for d in "8944500102198304826")


def test_phone_email_and_iccid_are_masked_wherever_they_appear() -> None:
    text = "line 8944500102198304826 of +447700900123 <traveller@example.com>"
    masked = mask(text)
    assert "8944500102198304826" not in masked
    assert "+447700900123" not in masked
    assert "traveller@" not in masked
    assert masked == "line 8944***********4826 of +44*******123 <t***@example.com>"


def logged(
    monkeypatch: pytest.MonkeyPatch, out: io.StringIO, write: Callable[[], None]
) -> dict[str, Any]:
    """The JSON record of the last line `write` logs through the services' logging."""
    monkeypatch.setattr("sys.stdout", out)
    configure_logging("orders", "INFO")
    try:
        write()
    finally:
        logging.getLogger().handlers[:] = []
    record: dict[str, Any] = json.loads(out.getvalue().splitlines()[-1])
    return record


def test_order_ids_and_amounts_are_left_alone() -> None:
    text = "order 2b0c6d1e-1c2a-5f3e-9a4b-3f0b7d1e2c55 charged 1500 EUR"
    assert mask(text) == text


def test_a_log_line_is_json_with_the_service_and_masked_arguments_and_tracebacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse() -> None:
        try:
            raise ValueError("bad email traveller@example.com")
        except ValueError:
            logging.getLogger("test").exception("refused %s", "+447700900123")

    out = io.StringIO()
    record = logged(monkeypatch, out, refuse)
    assert record["service"] == "orders"
    assert record["level"] == "ERROR"
    assert record["message"] == "refused +44*******123"
    assert "traveller@" not in out.getvalue()
    assert "t***@example.com" in out.getvalue()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # A request's URL, URL-encoded: decoded, then masked.
        (
            "GET /orders?request_id=8944500102198304826%0A",
            "GET /orders?request_id=8944***********4826\n",
        ),
        ("q=%2B447700900123&x=traveller%40example.com", "q=+44*******123&x=t***@example.com"),
        # Cut short inside an error text: what is left is still masked.
        ("no line 89445001021983...", "no line 8944**********..."),
        ("for traveller@exa", "for t***@exa"),
        # Secrets in JSON and in a query string, and a bearer token.
        ('{"payment_token": "tok_secret_abcdef123"}', '{"payment_token": "****f123"}'),
        ("payment_token=tok_abcdefghij&y=2", "payment_token=****ghij&y=2"),
        ("Authorization: Bearer abcdefghijkl", "Authorization: Bearer ****ijkl"),
        # However the digits are written: grouped, fullwidth, Arabic-Indic.
        ("line 8944 5001 0219 8304 826", "line 8944***********4826"),
        ("line " + FULLWIDTH_ICCID, "line 8944***********4826"),
        ("call +44 7700 900123", "call +44*******123"),
        # Ids and request ids with digits are shown as they are.
        (
            "no dead letter payments.events.v1.dlt:0:999999999",
            "no dead letter payments.events.v1.dlt:0:999999999",
        ),
        ("request req-12345678901", "request req-12345678901"),
        (
            "order df8d0065-6d4f-5f11-8967-0012c473bcb2",
            "order df8d0065-6d4f-5f11-8967-0012c473bcb2",
        ),
        ("card 4242x4242x4242x4242", "card ************4242"),
        # Emails of any script; a library's quote of a refused input, dropped whole.
        ("from öscar@example.com", "from ö***@example.com"),
        (
            "[type=string_type, input_value=b'...tok_live_SECRET99\" X', input_type=bytes]",
            "[type=string_type, input_value=..., input_type=bytes]",
        ),
        # Prose and times are left alone.
        ("unknown token: it belongs to no caller", "unknown token: it belongs to no caller"),
        ("at 2026-12-06T08:10:05.123456+00:00", "at 2026-12-06T08:10:05.123456+00:00"),
    ],
)
def test_masking_cannot_be_sidestepped_by_encoding_cutting_or_structure(
    text: str, shown: str
) -> None:
    assert mask(text) == shown


def test_structured_fields_are_masked_and_secrets_by_their_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fields = {"iccid": "8944500102198304826", "payment_token": "tok_abcdefghijk"}
    record = logged(
        monkeypatch,
        io.StringIO(),
        lambda: logging.getLogger("test").info(
            "set", extra={"audit": fields, "line": "+447700900123"}
        ),
    )
    assert record["audit"] == {"iccid": "8944***********4826", "payment_token": "****hijk"}
    assert record["line"] == "+44*******123"


async def test_a_line_logged_while_handling_a_message_says_which_order_event_and_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    broker = build_broker(ServiceSettings(service_name="orders"))

    @broker.subscriber("log-context-test", group_id="t")
    async def handle(body: dict[str, str]) -> None:
        logging.getLogger("handler").warning("handling %s", body["what"])

    configure_logging("orders", "INFO")
    try:
        async with TestKafkaBroker(broker):
            await broker.publish(
                {"what": "it"},
                topic="log-context-test",
                key=b"8944500102198304826",
                headers={"type": "PaymentCaptured", "event_id": "e-1", "order_id": "o-1"},
            )
    finally:
        logging.getLogger().handlers[:] = []
    line = next(json.loads(x) for x in out.getvalue().splitlines() if "handling it" in x)
    assert (line["order_id"], line["event_id"], line["type"]) == ("o-1", "e-1", "PaymentCaptured")
    assert line["iccid"] == "8944***********4826"


async def test_a_line_logged_while_handling_a_usage_report_has_no_order_but_a_masked_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    broker = build_broker(ServiceSettings(service_name="provisioning"))
    at = datetime(2026, 11, 1, tzinfo=UTC)
    report = UsageReported(
        event_id=uuid.uuid4(),
        iccid="8944500102198304826",
        used_mb=35,
        period_start=at,
        period_end=at,
    )

    @broker.subscriber(topics.CARRIER_USAGE, group_id="t")
    async def handle(body: UsageReported) -> None:
        logging.getLogger("handler").warning("line %s used %s MB", body.iccid, body.used_mb)

    configure_logging("provisioning", "INFO")
    try:
        async with TestKafkaBroker(broker):
            await broker.publish(
                report.model_dump(mode="json"),
                topic=topics.CARRIER_USAGE,
                key=report.iccid.encode(),
                headers=message_headers(report),
            )
    finally:
        logging.getLogger().handlers[:] = []
    line = next(json.loads(x) for x in out.getvalue().splitlines() if "used 35 MB" in x)
    assert (line["type"], line["event_id"]) == ("UsageReported", str(report.event_id))
    assert "order_id" not in line
    assert line["iccid"] == "8944***********4826"
    assert line["message"] == "line 8944***********4826 used 35 MB"
    assert "8944500102198304826" not in out.getvalue()


def test_a_card_number_is_masked_in_any_form_and_an_iccid_stays_an_iccid() -> None:
    text = mask("token 4242.4242.4242.4242 for line 8944500102198304826, card:5555555555554444")
    assert "4242.4242" not in text
    assert "************4242" in text
    assert "************4444" in text
    assert "8944*" in text
