"""How the CLI reports what a service refused, or that it could not reach it: one red
line and exit status 1, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape


class CliError(Exception):
    """What went wrong, in one line."""


@contextmanager
def reported(console: Console) -> Iterator[None]:
    """Turn a CliError into one red line and exit status 1."""
    try:
        yield
    except CliError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def error_detail(response: httpx.Response) -> str:
    """FastAPI's `detail`: a sentence, or its validation errors as `field: message; ...`."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        detail = "; ".join(_validation_error(d) for d in detail)
    return f"{detail or response.reason_phrase} (HTTP {response.status_code})"


def _validation_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    message = str(error.get("msg", error)).removeprefix("Value error, ")
    field = [str(part) for part in error.get("loc", []) if part not in ("body", "path")]
    return f"{'.'.join(field)}: {message}" if field else message
