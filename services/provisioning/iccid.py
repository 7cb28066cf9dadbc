"""ICCIDs as ITU-T E.118 defines them: 19-20 digits starting 89, the last a Luhn check."""

from __future__ import annotations

from typing import Final

ICCID_PATTERN: Final = r"^89\d{17,18}$"


def has_valid_check_digit(iccid: str) -> bool:
    """Luhn: double every second digit from the right; the sum is a multiple of 10."""
    total = 0
    for position, char in enumerate(reversed(iccid)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def is_valid_iccid(iccid: str) -> bool:
    digits_ok = iccid.isascii() and iccid.isdigit() and len(iccid) in (19, 20)
    return digits_ok and iccid.startswith("89") and has_valid_check_digit(iccid)
