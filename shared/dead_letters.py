"""Dead letters: a message a consumer cannot process goes to `<topic>.dlt`, with its
original bytes and key, and headers saying where it came from and what was wrong;
the consumer moves on at once. Nothing is dropped and no partition is blocked.

- undecodable bytes, a schema-invalid payload, an unknown schema version or a
  broken business rule: dead-lettered at once (retrying cannot help);
- anything else (a database or broker hiccup) is retried with backoff, a few
  times, and dead-lettered only if it keeps failing; but never while the database is
  out of reach (shared/outages.py): the message is given back and comes again, however
  long the outage lasts;
- a message larger than the contract allows (shared/limits.py) is dead-lettered
  `too_large` before anyone parses it, and a dead letter always fits the broker:
  one too large to copy keeps a prefix, with the original's size and SHA-256 and
  where it is on its source topic (the original is still there, while retained);
  the original's headers are copied up to a budget.

A dead letter that cannot be written is tried again with backoff for a while, the
partition held (and shown stuck, shared/progress.py); then the error reaches the
acknowledgement policy, which delivers the message again: never lost, never a hot
loop, and counted in `topup_dead_letters_total` only once written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import sqlalchemy.exc
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from pydantic import ValidationError

from shared.card_numbers import mask_card_numbers, mask_digit_runs
from shared.limits import (
    DEAD_LETTER_ERROR_CHARS,
    DEAD_LETTER_HEADER_VALUE_BYTES,
    DEAD_LETTER_HEADERS_BYTES,
    DEAD_LETTER_PREFIX_BYTES,
    MAX_MESSAGE_BYTES,
)
from shared.logs import now_and_then
from shared.metrics import DEAD_LETTERS
from shared.outages import database_unreachable
from shared.progress import PROGRESS
from shared.topics import dead_letter_topic

log = logging.getLogger(__name__)

RETRY_DELAYS_S: Final = (0.1, 0.4, 1.6, 3.2)
# Writing a dead letter: ~2 minutes of tries inside the handler (well within the
# consumer's max.poll.interval), then the error goes to the ack policy and the message
# comes back, to be tried the same way.
WRITE_DELAYS_S: Final = (0.5, 1, 2, 4, 8, 16, 30, 30, 30)


class TooLarge(Exception):
    """A message larger than the contract allows (shared/limits.py)."""


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
    if isinstance(error, TooLarge):
        return "too_large"
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


@dataclass(frozen=True)
class DeadLetter:
    value: bytes
    key: bytes | None
    headers: dict[str, str]


def dead_letter(record: Any, reason: str, error: BaseException, consumer: str) -> DeadLetter:
    """What goes to `<topic>.dlt` for `record`: bounded whatever the record's size."""
    value = bytes(record.value or b"")
    copied, headers_cut = _bounded_headers(record.headers or ())
    headers = {
        **copied,
        "dlq.source.topic": str(record.topic),
        "dlq.source.partition": str(record.partition),
        "dlq.source.offset": str(record.offset),
        "dlq.source.size": str(len(value)),
        "dlq.source.sha256": hashlib.sha256(value).hexdigest(),
        "dlq.reason": reason,
        "dlq.error": f"{type(error).__name__}: {error}"[:DEAD_LETTER_ERROR_CHARS],
        "dlq.consumer": consumer,
        "dlq.failed_at": datetime.now(UTC).isoformat(),
    }
    too_large = len(value) > MAX_MESSAGE_BYTES
    if too_large:  # only what is kept is looked at: the prefix, and a card across its end
        value = value[: DEAD_LETTER_PREFIX_BYTES + 64]
    redacted = without_card_numbers(value)
    if redacted != value:  # a publisher's card number goes no further than its own topic
        value, headers["dlq.redacted"] = redacted, "card_number"
        headers["dlq.error"] = mask_digit_runs(mask_card_numbers(headers["dlq.error"]))
    if too_large:
        value = value[:DEAD_LETTER_PREFIX_BYTES]
        headers["dlq.truncated"] = "value"
    if headers_cut:
        headers["dlq.truncated"] = ",".join(filter(None, (headers.get("dlq.truncated"), "headers")))
    key = bytes(record.key)[:DEAD_LETTER_HEADER_VALUE_BYTES] if record.key is not None else None
    return DeadLetter(value, key, headers)


def without_card_numbers(value: bytes) -> bytes:
    """`value` with every card number masked, every other byte as it was."""
    text = value.decode("utf-8", errors="surrogateescape")
    return mask_card_numbers(text).encode("utf-8", errors="surrogateescape")


def _bounded_headers(raw: Any) -> tuple[dict[str, str], bool]:
    """The original's headers, each value cut short and all within a budget; whether any
    was cut or left out. Our own `dlq.*` names are never taken from the original."""
    kept: dict[str, str] = {}
    spent, cut = 0, False
    for name, value in raw:
        name = str(name)[:100]
        if name.startswith("dlq."):
            continue
        data = bytes(value or b"")
        if len(data) > DEAD_LETTER_HEADER_VALUE_BYTES:
            data, cut = data[:DEAD_LETTER_HEADER_VALUE_BYTES], True
        if spent + len(name) + len(data) > DEAD_LETTER_HEADERS_BYTES:
            cut = True
            continue
        spent += len(name) + len(data)
        kept[name] = data.decode(errors="replace")
    return kept, cut


class DeadLetters(BaseMiddleware):
    """Wraps every consumer of the broker (see shared/kafka.py build_broker)."""

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        record = msg.raw_message
        where = (self._group(str(record.topic)), str(record.topic), int(record.partition))
        PROGRESS.started(*where, int(record.offset))
        try:
            result = await self._handle(call_next, msg)
        except BaseException:
            PROGRESS.given_back(*where)  # to the ack policy: it will come again
            raise
        PROGRESS.finished(*where)
        return result

    async def _handle(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        size = len(msg.body)
        if size > MAX_MESSAGE_BYTES:  # refused before anyone parses it
            error = TooLarge(f"{size} bytes; the contract allows {MAX_MESSAGE_BYTES}")
            await self._dead_letter(msg, "too_large", error)
            return None
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
                    if now_and_then(f"transient:{type(error).__name__}"):
                        log.warning("transient failure (%r); retrying in %.1fs", error, delay)
                    await asyncio.sleep(delay)
                    continue
                if reason is None and database_unreachable(error):
                    # Not the message's fault: given back to the ack policy, it comes again
                    # (its partition held, and shown stuck) until the database is back.
                    if now_and_then("database unreachable"):
                        log.error("database unreachable (%r); the message comes again", error)
                    raise
                await self._dead_letter(msg, reason or "retries_exhausted", error)
                return None
        return None  # unreachable: the last pass either returns or dead-letters

    def _group(self, topic: str) -> str:
        return f"{self.context.get('settings').service_name}:{topic}"

    async def _dead_letter(
        self, msg: StreamMessage[Any], reason: str, error: BaseException
    ) -> None:
        record = msg.raw_message
        source = str(record.topic)
        consumer = str(self.context.get("settings").service_name)
        letter = dead_letter(record, reason, error, consumer)
        broker = self.context.get("broker")
        for delay in (*WRITE_DELAYS_S, None):
            try:
                await broker.publish(
                    letter.value,
                    topic=dead_letter_topic(source),
                    key=letter.key,
                    headers=letter.headers,
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception as failure:
                if delay is None:
                    raise
                if now_and_then(f"dlt-write:{source}"):
                    log.error(
                        "cannot write a dead letter of %s[%s]@%s (%r); trying again in %ss",
                        source, record.partition, record.offset, failure, delay,
                    )  # fmt: skip
                await asyncio.sleep(delay)
        DEAD_LETTERS.labels(source, reason).inc()  # only once it is written
        log.error(
            "dead-lettered %s[%s]@%s: %s (%s)",
            source,
            record.partition,
            record.offset,
            reason,
            letter.headers["dlq.error"],  # bounded, and masked where it quoted a card number
        )
