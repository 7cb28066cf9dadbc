"""Service logs: one JSON object per line, with personal data masked.

Phone numbers, email addresses and ICCIDs are masked wherever they appear in a
record (messages, arguments, exception text), because errors quote inputs: a
pydantic validation error, for one, repeats the value it refused.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

_ICCID = re.compile(r"\b89\d{15,18}\b")
_PHONE = re.compile(r"\+\d{7,15}\b")
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")


def mask(text: str) -> str:
    """`8944500102198304826` -> `8944*********04826`-like: enough to tell lines apart in
    support, not enough to be one; `+447700900123` -> `+44*******123`;
    `traveller@example.com` -> `t***@example.com`."""
    text = _ICCID.sub(lambda m: m[0][:4] + "*" * (len(m[0]) - 8) + m[0][-4:], text)
    text = _PHONE.sub(lambda m: m[0][:3] + "*" * (len(m[0]) - 6) + m[0][-3:], text)
    return _EMAIL.sub(lambda m: f"{m[1]}***@{m[2]}", text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = None
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def uvicorn_log_config() -> dict[str, Any]:
    """Let uvicorn's loggers go through the root handler above."""
    return {"version": 1, "disable_existing_loggers": False}
