"""Dead letters: a message a consumer cannot process goes to `<topic>.dlt`, with its
original bytes and key, and headers saying where it came from and what was wrong;
the consumer moves on at once. Nothing is dropped and no partition is blocked.

- undecodable bytes, a schema-invalid payload, an unknown schema version or a
  broken business rule: dead-lettered at once (retrying cannot help);
- anything else (a database or broker hiccup) is retried with backoff, a few
  times, and dead-lettered only if it keeps failing.

Only if the dead-letter topic itself cannot be written does the error reach the
acknowledgement policy, which then delivers the message again: never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import sqlalchemy.exc
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from pydantic import ValidationError

from shared.metrics import DEAD_LETTERS
from shared.topics import dead_letter_topic

log = logging.getLogger(__name__)

RETRY_DELAYS_S: Final = (0.1, 0.4, 1.6, 3.2)


class BusinessRuleViolation(Exception):
    """A well-formed message that breaks a rule of the domain (e.g. an unknown order)."""


class MalformedMessage(Exception):
    """A message its consumer found unusable after parsing it by hand."""


def classify(error: BaseException) -> str | None:
    """The dead-letter reason for `error`, or None when it may pass if tried again."""
    if isinstance(error, json.JSONDecodeError | UnicodeError):
        return "undecodable"  # UnicodeError: also a string the database cannot store
    if isinstance(error, OverflowError) or _refused_as_data(error):
        return "schema_invalid"  # e.g. a number too large for its column
    if isinstance(error, ValidationError):
        locations = {str(part) for e in error.errors() for part in e["loc"]}
        return "unknown_schema_version" if "schema_version" in locations else "schema_invalid"
    if isinstance(error, MalformedMessage):
        return "schema_invalid"
    if isinstance(error, BusinessRuleViolation):
        return "business_rule"
    return None


def _refused_as_data(error: BaseException) -> bool:
    """A value the database cannot take (SQLSTATE class 22, or asyncpg refusing to encode
    it, e.g. out of int32 range): the message's fault, never passing on a retry."""
    if isinstance(error, sqlalchemy.exc.DataError):
        return True
    cause = getattr(getattr(error, "orig", None), "__cause__", None)
    return isinstance(cause, asyncpg.exceptions.DataError)


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError too
        return False
    return True


class DeadLetters(BaseMiddleware):
    """Wraps every consumer of the broker (see shared/kafka.py build_broker)."""

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        for delay in (*RETRY_DELAYS_S, None):
            try:
                return await call_next(msg)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                reason = classify(error)
                if reason in (None, "schema_invalid") and not _is_json(msg.body):
                    # Bytes that are not JSON reach a handler undecoded (FastStream only
                    # tries to decode them) and fail its validation, or fail decoding
                    # itself (e.g. nested too deep): either way, no retry can help.
                    reason = "undecodable"
                if reason is None and delay is not None:
                    log.warning("transient failure (%r); retrying in %.1fs", error, delay)
                    await asyncio.sleep(delay)
                    continue
                await self._dead_letter(msg, reason or "retries_exhausted", error)
                return None
        return None  # unreachable: the last pass either returns or dead-letters

    async def _dead_letter(self, msg: StreamMessage[Any], reason: str, error: Exception) -> None:
        record = msg.raw_message
        source = str(record.topic)
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        headers.update(
            {
                "dlq.source.topic": source,
                "dlq.source.partition": str(record.partition),
                "dlq.source.offset": str(record.offset),
                "dlq.reason": reason,
                "dlq.error": f"{type(error).__name__}: {error}"[:2000],
                "dlq.consumer": str(self.context.get("settings").service_name),
                "dlq.failed_at": datetime.now(UTC).isoformat(),
            }
        )
        DEAD_LETTERS.labels(source, reason).inc()
        broker = self.context.get("broker")
        await broker.publish(
            record.value or b"", topic=dead_letter_topic(source), key=record.key, headers=headers
        )
        log.error(
            "dead-lettered %s[%s]@%s: %s (%s)",
            source,
            record.partition,
            record.offset,
            reason,
            error,
        )
