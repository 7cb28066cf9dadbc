"""Payments take the provider's tokens only: a card number is never stored or sent on."""

import re

_SEPARATORS = re.compile(r"[\s-]")
_CARD_NUMBER = re.compile(r"\d{13,19}")


def looks_like_card_number(token: str) -> bool:
    """13 to 19 digits (ISO/IEC 7812), as printed on cards, with or without spaces."""
    return _CARD_NUMBER.fullmatch(_SEPARATORS.sub("", token)) is not None


def storable(token: str) -> str:
    """The token as it may be kept: a card number keeps only its last four digits."""
    if not looks_like_card_number(token):
        return token
    digits = _SEPARATORS.sub("", token)
    return "*" * (len(digits) - 4) + digits[-4:]
