"""How the CLI writes amounts, times and long texts."""

from __future__ import annotations

from typing import Any

from rich.markup import escape


def amount(minor: int, currency: str) -> str:
    """Minor units shown with two decimals (every catalog currency has two)."""
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d} {currency}"


def money(value: dict[str, Any] | None) -> str:
    if value is None:
        return "-"
    return amount(value["amount_minor"], value["currency"])


def clock(timestamp: str | None) -> str:
    """`2026-11-24T17:21:05.123456+00:00` -> `17:21:05.123` (the API's times are UTC)."""
    return timestamp[11:23] if timestamp else "-"


def short(text: str | None, width: int) -> str:
    """At most `width` characters on one line, escaped: message bodies and errors are
    untrusted text, and a `[` in them must not be read as Rich markup."""
    text = " ".join((text or "").split())
    return escape(text if len(text) <= width else text[: width - 1] + "…")
