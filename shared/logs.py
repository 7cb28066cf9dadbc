"""Service logs: one JSON object per line, with personal data masked.

Phone numbers, email addresses, ICCIDs, card numbers and tokens are masked wherever
they appear in a record (messages, arguments, exception text, structured fields),
because errors quote inputs: a pydantic validation error, for one, repeats the value it
refused. `mask` is also what every operator answer goes through (docs/operations.md says
what it leaves in clear). Its patterns are anchored so that it takes time in proportion
to the text, whatever the text: it runs on the event loop, on what anyone may send.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

from faststream import BaseMiddleware
from faststream.message import StreamMessage
from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from shared.card_numbers import TIMESTAMP_PATTERN, UUID_PATTERN, ascii_digits, mask_card_numbers

# An ICCID, or what is left of one cut short (8 digits or more from its 89): the digits
# may be followed by anything, letters included (`...&x=`, a cut `...`).
_ICCID = re.compile(r"(?<![0-9])89[0-9]{6,18}")
_PHONE = re.compile(r"\+[0-9]{7,15}")
# Anchored at the start of a run (the look-behind): a long run without `@` is scanned
# once, not once per character (which was quadratic in the text's length).
_EMAIL_LOCAL = re.compile(r"(?<![\w.%+-])([\w.%+-])[\w.%+-]*@")
# What pydantic quotes of a refused input (`input_value=...`, cut at its own length, so
# it can hold a secret whose field name was cut off): dropped whole.
_QUOTED_INPUT = re.compile(r"input_value=.*?(?=, input_type=|\]|$)", re.DOTALL)
# Structured fields whose value is a secret whatever it looks like.
SECRET_KEYS = frozenset(
    {"payment_token", "token", "authorization", "password", "secret", "api_tokens",
     "operator_tokens", "card_number"}
)  # fmt: skip


# A secret written as a JSON member (`"payment_token": "tok_..."`) or a `key=value` pair
# (a query string), inside any text; a bearer token after its scheme.
_SECRET_NAMES = r"(?:payment_token|token|password|secret)"  # noqa: S105 - names, not values
_SECRET_PAIR = re.compile(
    rf"""(["']{_SECRET_NAMES}["']\s*:\s*["'])([^"']+)|(\b{_SECRET_NAMES}=)([^&\s"',;]+)""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(Bearer\s+)([A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)


def _mask_pair(found: re.Match[str]) -> str:
    if found[1] is not None:
        return found[1] + mask_token(found[2])
    return found[3] + mask_token(found[4])


_GROUPED_ICCID = re.compile(r"(?<![0-9])8[\s\-./_]{0,3}9(?:[\s\-./_]{0,3}[0-9]){6,18}")
_GROUPED_PHONE = re.compile(r"\+[0-9](?:[\s\-./()]{0,3}[0-9]){6,14}")
_NOT_A_DIGIT = re.compile(r"[^0-9]")
_KEPT = re.compile(f"({UUID_PATTERN}|{TIMESTAMP_PATTERN})")


def _mask_phone(digits: str) -> str:
    return "+" + digits[:2] + "*" * (len(digits) - 5) + digits[-3:]


def _mask_iccid(found: re.Match[str]) -> str:
    return _mask_iccid_digits(found[0])


def _mask_iccid_digits(digits: str) -> str:
    if len(digits) < 19:  # cut short: its last digits are not the line's last 4
        return digits[:4] + "*" * (len(digits) - 4)
    return digits[:4] + "*" * (len(digits) - 8) + digits[-4:]


def _masked(text: str) -> str:
    text = _QUOTED_INPUT.sub("input_value=...", text)
    text = ascii_digits(text)  # fullwidth, Arabic-Indic... digits are digits
    text = _BEARER.sub(lambda m: m[1] + mask_token(m[2]), text)
    text = _SECRET_PAIR.sub(_mask_pair, text)
    # UUIDs (order ids, event ids) and ISO times are shown as they are: their digits,
    # 8967-0012 say, are no line's; the text between them is masked.
    pieces = _KEPT.split(text)
    return "".join(p if i % 2 else _masked_piece(p) for i, p in enumerate(pieces))


def _masked_piece(text: str) -> str:
    text = _ICCID.sub(_mask_iccid, text)
    text = mask_card_numbers(text)  # in any form; an ICCID (89...) is not one
    text = _PHONE.sub(lambda m: m[0][:3] + "*" * (len(m[0]) - 6) + m[0][-3:], text)
    text = _EMAIL_LOCAL.sub(lambda m: f"{m[1]}***@", text)
    # The same written in groups: `8944 5001 0219 8304 826`, `+44 7700 900123`.
    text = _GROUPED_ICCID.sub(lambda m: _mask_iccid_digits(_NOT_A_DIGIT.sub("", m[0])), text)
    return _GROUPED_PHONE.sub(lambda m: _mask_phone(_NOT_A_DIGIT.sub("", m[0])), text)


def mask(text: str) -> str:
    """`8944500102198304826` -> `8944***********4826`: enough to tell lines apart in
    support, not enough to be one (a cut one, `89445001...`, keeps its first 4 only);
    `+447700900123` -> `+44*******123`; `traveller@example.com` -> `t***@example.com`.
    A URL-encoded text (a request's URL, `%2B44...`, `traveller%40example.com`) is
    decoded first: what it encodes is masked, whatever the encoding hid."""
    return _masked(unquote(text) if "%" in text else text)


def mask_token(token: str) -> str:
    """A secret as it may be shown: its last 4 characters (none of a short one)."""
    return "****" + (token[-4:] if len(token) > 8 else "")


def mask_fields(value: Any, key: str = "") -> Any:
    """Every string in a structure (an answer's body, a log record's fields) masked; the
    value of a secret's key (SECRET_KEYS) cut to its last 4 characters whatever it is."""
    if isinstance(value, str):
        return mask_token(value) if key.lower() in SECRET_KEYS else mask(value)
    if isinstance(value, dict):
        return {k: mask_fields(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_fields(v, key) for v in value]
    return value


# What every LogRecord has; anything else on a record is a structured field (`extra=`).
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class MaskingFilter(logging.Filter):
    """Masks the message, its arguments, the exception text and every structured field."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _RECORD_FIELDS:
                setattr(record, name, mask_fields(value, name))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(service: str, level: str) -> None:
    """JSON lines on stdout for every logger of the process, masked."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            static_fields={"service": service},
        )
    )
    handler.addFilter(MaskingFilter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request's URL at INFO: a query can hold a line or a request id;
    # Stripe's client logs each request, and an error's whole message, unbounded.
    for chatty in ("httpx", "httpcore", "stripe"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def uvicorn_log_config() -> dict[str, Any]:
    """Let uvicorn's loggers go through the root handler above."""
    return {"version": 1, "disable_existing_loggers": False}


# What the message being handled is about, for every log line written while handling it.
_context: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("log_context", default=())


class ContextFilter(logging.Filter):
    """Adds the handled message's order id, event id, type and (masked) line to a record,
    and, when tracing is on (shared/tracing.py), the trace and span it was written in."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get():
            setattr(record, key, value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = trace.format_trace_id(span.trace_id)
            record.span_id = trace.format_span_id(span.span_id)
        return True


class LogContext(BaseMiddleware):
    """Binds the log context for one consumed message, from its key and headers only
    (our publishers set type and event_id, and order_id on a message about an order: not
    on the carrier's usage reports), so nothing is parsed twice."""

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        with about_message(msg.headers or {}, getattr(msg.raw_message, "key", None)):
            return await call_next(msg)


@contextmanager
def about_message(headers: Mapping[str, Any], key: Any) -> Iterator[None]:
    """Every line logged inside is about the message with these headers and this key
    (the line's ICCID, masked): what LogContext binds, for consumers outside FastStream
    (shared/batches.py)."""
    names: tuple[str, ...] = ("type", "event_id", "order_id")
    fields = [(k, str(headers[k])) for k in names if k in headers]
    if isinstance(key, bytes):
        fields.append(("iccid", mask(key.decode(errors="replace"))))
    token = _context.set(tuple(fields))
    try:
        yield
    finally:
        _context.reset(token)


_LAST_LOGGED: dict[str, float] = {}
_KEPT_KEYS = 1000


def now_and_then(key: str, every_s: float = 30.0) -> bool:
    """Whether to log an error of kind `key` now: the first time, then at most once per
    `every_s`, so an error repeated on every retry does not flood the log."""
    now = time.monotonic()
    last = _LAST_LOGGED.get(key)
    if last is not None and now - last < every_s:
        return False
    if len(_LAST_LOGGED) >= _KEPT_KEYS:
        _LAST_LOGGED.pop(next(iter(_LAST_LOGGED)))
    _LAST_LOGGED[key] = now
    return True
