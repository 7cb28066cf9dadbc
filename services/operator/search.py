"""Finding orders by what an operator has at hand: an order id, a publisher's request
id or a line's ICCID; each with its transitions and its Kafka timeline."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from services.operator.orders_client import OrdersCaller
from services.operator.timeline import OrderRef, timelines
from shared.kafka_access import KafkaClient
from shared.logs import mask

Kind = Literal["order_id", "request_id", "iccid"]

ICCID: Final = re.compile(r"^\d{19,20}$")
MOST_ORDERS_OF_A_LINE: Final = 20


def search_kind(query: str) -> Kind:
    """A UUID is an order id, 19-20 digits an ICCID, anything else a request id."""
    try:
        uuid.UUID(query)
    except ValueError:
        return "iccid" if ICCID.fullmatch(query) else "request_id"
    return "order_id"


async def find_orders(orders: OrdersCaller, query: str) -> tuple[Kind, list[dict[str, Any]]]:
    """What the query names, and the orders (as orders serves them, with transitions)."""
    kind = search_kind(query)
    if kind == "order_id":
        found = await orders.order(query)
        if found is not None:
            return kind, [found]
        kind = "request_id"  # a publisher may use UUIDs as request ids
    if kind == "request_id":
        found = await orders.by_request(query)
        return kind, [found] if found is not None else []
    line = await orders.of_line(query)
    full = [await orders.order(str(o["order_id"])) for o in line[:MOST_ORDERS_OF_A_LINE]]
    return kind, [o for o in full if o is not None]


def _ref(order: dict[str, Any]) -> OrderRef:
    return OrderRef(
        order_id=str(order["order_id"]),
        request_id=str(order["request_id"]),
        iccid=str(order["iccid"]),
        created_at=datetime.fromisoformat(str(order.get("created_at") or order["at"])),
    )


def _view(order: dict[str, Any], timeline: list[dict[str, Any]]) -> dict[str, Any]:
    if order["state"] == "REJECTED":
        cause = f"{order.get('reason')}: {order.get('message')}"
        transitions = [{"state": "REJECTED", "at": order["at"], "cause": cause}]
    else:
        transitions = [
            {"state": t["to_state"], "at": t["at"], "cause": t["cause"]}
            for t in order.get("timeline", [])
        ]
    return {
        "order_id": str(order["order_id"]),
        "request_id": order["request_id"],
        "iccid": mask(str(order["iccid"])),
        "state": order["state"],
        "package_id": order.get("package_id"),
        "total": order.get("total"),
        "transitions": transitions,
        "timeline": timeline,
    }


async def search(
    orders: OrdersCaller, kafka: KafkaClient, query: str, margin: timedelta, max_scan: int
) -> dict[str, Any] | None:
    """The /api/orders/search body, or None when nothing matches."""
    kind, found = await find_orders(orders, query)
    if not found:
        return None
    refs = [_ref(order) for order in found]
    messages = await timelines(kafka, refs, margin, max_scan)
    return {
        "query": query,
        "kind": kind,
        "orders": [_view(o, messages[ref.order_id]) for o, ref in zip(found, refs, strict=True)],
    }
