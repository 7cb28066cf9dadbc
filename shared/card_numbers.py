"""Card numbers are never taken: only a payment provider's token. A card number is
recognised in any form a publisher may write it: its digits in groups of two or more with
up to four separators between groups (spaces, dashes, dots, slashes, commas, plus signs,
underscores, colons, pipes, x, stars, hashes, invisible characters), digits of any
script (fullwidth, Arabic-Indic...), a prefix such as `card:` before it, an expiry date
glued after it. So it is refused where it enters, masked in logs and removed from dead
letters; a field meant for a token is held to a stricter rule (`holds_card_number`)."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# Digit groups of 2 or more, 13 digits or more in all, on the normalised text.
_RUN = re.compile(r"(?<![0-9])[0-9]{2,}(?:[\s\-./_:,+|xX*#]{1,4}[0-9]{2,})+|(?<![0-9])[0-9]{13,}")
_NOT_A_DIGIT = re.compile(r"[^0-9]")


def luhn_valid(digits: str) -> bool:
    """The Luhn check (ISO/IEC 7812) over a string of digits: card numbers, ICCIDs."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


class _Normalising(dict[int, int]):
    """str.translate's table, filled as characters are met (a C-level lookup after the
    first): a decimal digit of any script -> its ASCII digit, an invisible (format)
    character -> a space, any other -> itself."""

    def __missing__(self, code: int) -> int:
        char = chr(code)
        if char.isdecimal() and not char.isascii():
            self[code] = ord(str(unicodedata.decimal(char)))
        elif unicodedata.category(char) == "Cf":
            self[code] = ord(" ")
        else:
            self[code] = code
        return self[code]


_NORMALISING = _Normalising()


UUID_PATTERN: Final = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# An ISO 8601 time (2026-12-06T08:10:05.123456+00:00): its digits are no card number.
TIMESTAMP_PATTERN: Final = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
)
_UUID = re.compile(UUID_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


def ascii_digits(text: str) -> str:
    """`text` with digits of any script as ASCII digits and invisible characters as
    spaces, one character for one."""
    return text if text.isascii() else text.translate(_NORMALISING)


def _normalised(text: str) -> str:
    """`text` with digits of any script as ASCII digits, invisible characters as spaces
    and UUIDs (order ids, event ids) and ISO times blanked out: one character for one, so
    positions stay the same."""
    text = ascii_digits(text)
    text = _UUID.sub(lambda uuid: "x" * len(uuid[0]), text)
    return _TIMESTAMP.sub(lambda time: "x" * len(time[0]), text)


def _card_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, digits) of each card number in `text`: 13 to 19 digits at the start of
    a run passing the Luhn check, not starting with 89 (the telecom industry's identifier:
    that is an ICCID)."""
    normalised = _normalised(text)
    spans = []
    for match in _RUN.finditer(normalised):
        run = match[0]
        ends = [i + 1 for i, char in enumerate(run) if char.isdigit()]  # after each digit
        for count in range(min(len(ends), 19), 12, -1):
            digits = _NOT_A_DIGIT.sub("", run[: ends[count - 1]])
            if not digits.startswith("89") and luhn_valid(digits):
                spans.append((match.start(), match.start() + ends[count - 1], digits))
                break
    return spans


def card_numbers_in(text: str) -> list[str]:
    """The card numbers in `text`, as written there."""
    return [text[start:end] for start, end, _digits in _card_spans(text)]


def looks_like_card_number(token: str) -> bool:
    """Whether `token` holds a card number, in any form."""
    return bool(_card_spans(token))


def holds_card_number(token: str) -> bool:
    """Whether a field meant for a provider's token holds a card number in any form: on
    top of the forms above, every non-digit removed (letters too: `4242x4242...`, a
    `1` glued before it) and any 13 to 19 consecutive digits of what is left passing the
    Luhn check, but an ICCID's 89. Stricter than for free text, where a run of digits
    across words would be no card: a token field has no business holding 13 digits."""
    if looks_like_card_number(token):
        return True
    digits = _NOT_A_DIGIT.sub("", _normalised(token))
    return any(
        not digits.startswith("89", start) and luhn_valid(digits[start : start + length])
        for start in range(len(digits) - 12)
        for length in range(13, min(19, len(digits) - start) + 1)
    )


def storable(token: str) -> str:
    """The token as it may be kept: a card number keeps only its last four digits."""
    return mask_card_numbers(token)


def mask_card_numbers(text: str) -> str:
    """Every card number in `text` as stars and its last four digits."""
    return _masked(text, _card_spans(text))


def _masked(text: str, spans: list[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, digits) span as stars and the digits' last four."""
    for start, end, digits in reversed(spans):
        text = text[:start] + "*" * (len(digits) - 4) + digits[-4:] + text[end:]
    return text


_DIGIT_RUN = re.compile(r"[0-9](?:[\s\-./_:,+|xX*#]{0,4}[0-9]){7,}")


def mask_digit_runs(text: str) -> str:
    """Every run of 8 digits or more as stars and its last four: for a text that quoted
    a card number and may have cut it short (an error message's `...`), where a piece of
    it would no longer look like a card number."""
    runs = _DIGIT_RUN.finditer(_normalised(text))
    return _masked(text, [(m.start(), m.end(), _NOT_A_DIGIT.sub("", m[0])) for m in runs])
