"""The sizes the contract promises (docs/contract.md), in one place.

A message on any of our topics is at most MAX_MESSAGE_BYTES; a larger one is refused
before it is parsed (dead-lettered `too_large`). The broker and our producers allow far
more (BROKER_MAX_MESSAGE_BYTES, set on purpose in the broker's and the topics' settings),
so whatever we must write about a message we accepted, its answer or its dead letter,
always fits.
"""

from __future__ import annotations

from typing import Final

MAX_MESSAGE_BYTES: Final = 64 * 1024
# Kafka's message.max.bytes (its default, written down): what the broker takes at most.
BROKER_MAX_MESSAGE_BYTES: Final = 1_048_588
# Our producers' max_request_size: aiokafka's default, below the broker's limit.
PRODUCER_MAX_REQUEST_BYTES: Final = 1_048_576

# A dead letter of a message too large to copy keeps this much of its start.
DEAD_LETTER_PREFIX_BYTES: Final = 4 * 1024
# A dead letter copies the original's headers up to this many bytes (names and values),
# each value cut to DEAD_LETTER_HEADER_VALUE_BYTES.
DEAD_LETTER_HEADERS_BYTES: Final = 8 * 1024
DEAD_LETTER_HEADER_VALUE_BYTES: Final = 1024
DEAD_LETTER_ERROR_CHARS: Final = 2000

# What an answer (OrderRejected's message) quotes of a publisher's value, at most.
QUOTED_CHARS: Final = 40


def quoted(value: object) -> str:
    """A publisher's value for a message to people: repr'd, at most QUOTED_CHARS long."""
    text = repr(value)
    return text if len(text) <= QUOTED_CHARS else f"{text[: QUOTED_CHARS - 3]}..."


# The longest `stuck_after_s` an HTTP caller may ask for: a year (more overflows no clock,
# and means nothing).
MAX_STUCK_AFTER_S: Final = 366 * 24 * 3600.0
