"""Provisioning's HTTP read API: a line's balance, validity and top-up history."""

from typing import Any

from fastapi import APIRouter, HTTPException, Path, Request

from services.provisioning import provisioning

router = APIRouter()

ICCID = Path(pattern=r"^89\d{17,18}$", description="19-20 digits starting 89")


@router.get("/lines/{iccid}")
async def get_line(request: Request, iccid: str = ICCID) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        line = await provisioning.get_line(session, iccid)
    if line is None:
        raise HTTPException(status_code=404, detail=f"no line {iccid}")
    return line
