"""Orders' HTTP read API."""

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from services.orders import orders

router = APIRouter()


@router.get("/orders/{order_id}")
async def get_order(order_id: uuid.UUID, request: Request) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        order = await orders.get_order(session, order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return order
