"""Card numbers are never taken: only a payment provider's token. A card number is
recognised in any form a publisher may write it (spaces, dashes, dots, slashes,
underscores, colons between the digits; a prefix such as `card:` before them), so it is
refused where it enters, masked in logs and removed from dead letters."""

from __future__ import annotations

import re

# 13 to 19 digits (ISO/IEC 7812), each but the last followed by at most two separators.
_CARD_NUMBER = re.compile(r"(?<![0-9])(?:[0-9][\s\-./_:]{0,2}){12,18}[0-9](?![0-9])")
_SEPARATORS = re.compile(r"[^0-9]")


def luhn_valid(digits: str) -> bool:
    """The Luhn check (ISO/IEC 7812) over a string of digits: card numbers, ICCIDs."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def card_numbers_in(text: str) -> list[str]:
    """The runs of `text` that are card numbers: 13 to 19 digits passing the Luhn check,
    not starting with 89 (the telecom industry's identifier: that is an ICCID). A run
    with more digits after the number (an expiry date) holds it at its start."""
    found = []
    for match in _CARD_NUMBER.finditer(text):
        run = match[0]
        ends = [i + 1 for i, char in enumerate(run) if char.isdigit()]  # after each digit
        for count in range(min(len(ends), 19), 12, -1):
            candidate = run[: ends[count - 1]]
            digits = _SEPARATORS.sub("", candidate)
            if not digits.startswith("89") and luhn_valid(digits):
                found.append(candidate)
                break
    return found


def looks_like_card_number(token: str) -> bool:
    """Whether `token` holds a card number, in any form."""
    return bool(card_numbers_in(token))


def storable(token: str) -> str:
    """The token as it may be kept: a card number keeps only its last four digits."""
    return mask_card_numbers(token)


def mask_card_numbers(text: str) -> str:
    """Every card number in `text` as stars and its last four digits."""
    for found in card_numbers_in(text):
        digits = _SEPARATORS.sub("", found)
        text = text.replace(found, "*" * (len(digits) - 4) + digits[-4:])
    return text
