"""Orders' HTTP read API: an order (state and timeline) and the orders of a line."""

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from services.orders import orders

router = APIRouter()


@router.get("/orders/{order_id}")
async def get_order(order_id: uuid.UUID, request: Request) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        order = await orders.get_order(session, order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return order


@router.get("/orders")
async def find_order(
    request: Request, request_id: str = Query(min_length=1, max_length=200)
) -> dict[str, Any]:
    """The order a publisher's request made, or the rejection it got."""
    async with request.app.state.sessions() as session:
        found = await orders.find_by_request(session, request_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no order or rejection for {request_id!r}")
    return found


@router.get("/lines/{iccid}/orders")
async def orders_of_line(
    request: Request, iccid: str = Path(pattern=r"^\d{19,20}$", description="the line's ICCID")
) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        history = await orders.orders_of_line(session, iccid)
    return {"iccid": iccid, "orders": history}
