"""Orders' subscribers: parse, call one function once per message, in one transaction
with its inbox record and its outgoing messages (shared/inbox.py, shared/outbox.py).

Each topic's messages are handled in batches (shared/batches.py): the step below is
what one message does, whether it came in a batch or alone."""

import uuid
from datetime import timedelta
from typing import Annotated, Any

from faststream.kafka import KafkaRouter
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import orders
from services.orders.book import OrderBook
from services.orders.catalog import load_catalog
from services.orders.orders import usable_request_id
from services.orders.settings import OrdersSettings
from shared import topics
from shared.batches import Context, in_batches, parse_json_object
from shared.events import PaymentsEvent, ProvisioningEvent, order_id_for
from shared.inbox import handle_once
from shared.kafka import InContext, Sessions, saga_subscriber
from shared.outbox import Step, run_and_stage

SERVICE = "orders"
router = KafkaRouter()
Settings = Annotated[OrdersSettings, InContext("settings")]

place_orders = saga_subscriber(router, SERVICE, topics.ORDERS_COMMANDS)
payment_events = saga_subscriber(router, SERVICE, topics.PAYMENTS_EVENTS)
provisioning_events = saga_subscriber(router, SERVICE, topics.PROVISIONING_EVENTS)
_payment_event = TypeAdapter[Any](PaymentsEvent)
_provisioning_event = TypeAdapter[Any](ProvisioningEvent)


# A batch works on one book of orders (book.py): every order its messages are about,
# loaded and locked in one statement first, written back in one per table at the end.


async def _book_of_requests(session: AsyncSession, bodies: list[Any], _context: Context) -> None:
    ids = [order_id_for(b["request_id"]) for b in bodies if usable_request_id(b.get("request_id"))]
    book = await OrderBook.of(session).load(session, ids, with_requests=True)
    book.deferred = True


async def _book_of_events(session: AsyncSession, events: list[Any], _context: Context) -> None:
    book = await OrderBook.of(session).load(session, [e.order_id for e in events])
    book.deferred = True


async def _write_back(session: AsyncSession, _context: Context) -> None:
    await OrderBook.of(session).flush(session, deferred_too=True)


def _event_id(event: Any) -> tuple[uuid.UUID, str]:
    return event.event_id, event.type


# No inbox for an order request: its request_id already makes it idempotent, and a
# publisher that sends a request again must get its answer again.
@in_batches(
    place_orders, parse_json_object, prepare=_book_of_requests, finish=_write_back
)  # fmt: skip
def place_order_step(body: dict[str, Any], context: Context) -> Step:
    # A plain dict: a request that is not a valid PlaceOrder still gets an OrderRejected.
    settings: OrdersSettings = context.get("settings")
    catalog = load_catalog(settings.catalog_path)
    timeout = timedelta(seconds=settings.payment_timeout_s)
    return lambda session: orders.place_order(session, body, catalog, timeout)


@in_batches(
    payment_events, _payment_event.validate_json, _event_id,
    prepare=_book_of_events, finish=_write_back,
)  # fmt: skip
def payment_event_step(event: Any, _context: Context) -> Step:
    return lambda session: orders.on_payment_event(session, event)


@in_batches(
    provisioning_events, _provisioning_event.validate_json, _event_id,
    prepare=_book_of_events, finish=_write_back,
)  # fmt: skip
def provisioning_event_step(event: Any, _context: Context) -> Step:
    return lambda session: orders.on_provisioning_event(session, event)


@place_orders
async def on_place_order(body: dict[str, Any], sessions: Sessions, settings: Settings) -> None:
    await run_and_stage(sessions, place_order_step(body, {"settings": settings}))


@payment_events
async def on_payment_event(event: PaymentsEvent, sessions: Sessions) -> None:
    await handle_once(sessions, event.event_id, event.type, payment_event_step(event, {}))


@provisioning_events
async def on_provisioning_event(event: ProvisioningEvent, sessions: Sessions) -> None:
    await handle_once(sessions, event.event_id, event.type, provisioning_event_step(event, {}))
