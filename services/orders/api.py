"""Orders' HTTP read API: the catalog, an order (state and timeline), the orders of a
line, and the sagas by state with the stuck ones (for operators: an operator's token)."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from services.orders import orders, sagas
from services.orders.catalog import DEFAULT_CATALOG, load_catalog
from shared.access import Operator, Reader
from shared.http_errors import not_found, quote, unprocessable
from shared.limits import MAX_STUCK_AFTER_S

router = APIRouter()


PRICING_RULES = (
    "total = price - discount + fee, in integer minor units of the order's currency. "
    "discount: percent_off of the price, or amount_off in the currency (a code without an "
    "amount in the currency does not apply to it), never more than the price. "
    "fee = (price - discount) * percent_bp / 10,000, rounded half up to a minor unit, "
    "plus the method's fixed part in the currency."
)


NOT_FOUND = not_found("No order (or rejection) of that id")


@router.get("/catalog")
async def catalog(request: Request, _who: Reader) -> dict[str, Any]:
    """What internal systems may order and what it costs: packages with their prices per
    currency, promotions, payment methods with their fees, and how a total is reckoned."""
    settings = request.app.state.settings
    offered = load_catalog(getattr(settings, "catalog_path", DEFAULT_CATALOG))
    return {**offered.model_dump(mode="json"), "pricing": PRICING_RULES}


@router.get("/orders/{order_id}", responses=NOT_FOUND)
async def get_order(order_id: uuid.UUID, request: Request, _who: Reader) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        order = await orders.get_order(session, order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return order


@router.get("/orders", responses=NOT_FOUND)
async def find_order(
    request: Request, _who: Reader, request_id: str = Query(min_length=1, max_length=200)
) -> dict[str, Any]:
    """The order a publisher's request made, or the rejection it got."""
    if not orders.usable_request_id(request_id):
        raise unprocessable(
            ("query", "request_id"),
            "no request can have this id: it holds a NUL or a lone surrogate",
        )
    async with request.app.state.sessions() as session:
        found = await orders.find_by_request(session, request_id)
    if found is None:
        raise HTTPException(
            status_code=404, detail=f"no order or rejection for {quote(request_id)}"
        )
    return found


@router.get("/lines/{iccid}/orders")
async def orders_of_line(
    request: Request,
    _who: Reader,
    iccid: str = Path(pattern=r"^[0-9]{19,20}$", description="the line's ICCID"),
) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        history = await orders.orders_of_line(session, iccid)
    return {"iccid": iccid, "orders": history}


@router.get("/sagas")
async def saga_overview(
    request: Request,
    _operator: Operator,
    stuck_after_s: float = Query(
        default=30.0, gt=0, le=MAX_STUCK_AFTER_S, description="no transition for this long"
    ),
) -> dict[str, Any]:
    """How many sagas are in each state, and those stuck: not ended, not moving."""
    async with request.app.state.sessions() as session:
        return await sagas.saga_overview(
            session, datetime.now(UTC), timedelta(seconds=stuck_after_s)
        )
