"""How every /lines/{iccid} endpoint answers for a path that names no line it knows:
422 for anything not shaped like an ICCID (the documented pattern), 404 for one whose
check digit is wrong or a line never topped up."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path
from sqlalchemy.ext.asyncio import AsyncSession

from services.provisioning import db
from services.provisioning.iccid import is_valid_iccid
from shared.http_errors import not_found

Iccid = Annotated[
    str,
    Path(
        pattern=r"^89[0-9]{17,18}$",
        description="the line's ICCID: 19-20 digits starting 89, the last a Luhn check",
    ),
]

# What every /lines/{iccid} operation may answer besides its own.
NOT_FOUND = not_found("No line of that ICCID (never topped up)")


def check_iccid(iccid: str) -> None:
    """A path the pattern lets through but whose check digit is wrong names no line: 404
    (the OpenAPI pattern cannot say Luhn, so a 422 would refuse a documented-valid value)."""
    if not is_valid_iccid(iccid):
        raise HTTPException(
            status_code=404, detail=f"no line {iccid}: its last digit fails the Luhn check"
        )


def line_not_found(iccid: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no line {iccid}: it was never topped up")


async def known_line(session: AsyncSession, iccid: str) -> None:
    """Raise the 422 or the 404 unless `iccid` is a line provisioning knows."""
    check_iccid(iccid)
    if not await db.line_exists(session, iccid):
        raise line_not_found(iccid)
