import io
import json
import logging

import pytest

from shared.logs import configure_logging, mask


def test_phone_email_and_iccid_are_masked_wherever_they_appear() -> None:
    text = "line 8944500102198304826 of +447700900123 <traveller@example.com>"
    masked = mask(text)
    assert "8944500102198304826" not in masked
    assert "+447700900123" not in masked
    assert "traveller@" not in masked
    assert masked == "line 8944***********4826 of +44*******123 <t***@example.com>"


def test_order_ids_and_amounts_are_left_alone() -> None:
    text = "order 2b0c6d1e-1c2a-5f3e-9a4b-3f0b7d1e2c55 charged 1500 EUR"
    assert mask(text) == text


def test_a_log_line_is_json_with_the_service_and_masked_arguments_and_tracebacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    configure_logging("orders", "INFO")
    try:
        try:
            raise ValueError("bad email traveller@example.com")
        except ValueError:
            logging.getLogger("test").exception("refused %s", "+447700900123")
    finally:
        logging.getLogger().handlers[:] = []
    record = json.loads(out.getvalue().splitlines()[-1])
    assert record["service"] == "orders"
    assert record["level"] == "ERROR"
    assert record["message"] == "refused +44*******123"
    assert "traveller@" not in out.getvalue()
    assert "t***@example.com" in out.getvalue()
