"""Orders' subscribers: parse, call one function once per message, in one transaction
with its inbox record and its outgoing messages (shared/inbox.py, shared/outbox.py)."""

from datetime import timedelta
from typing import Annotated, Any

from faststream.kafka import KafkaRouter

from services.orders import orders
from services.orders.catalog import load_catalog
from services.orders.settings import OrdersSettings
from shared import topics
from shared.events import PaymentsEvent, ProvisioningEvent
from shared.inbox import handle_once
from shared.kafka import InContext, Sessions, saga_subscriber
from shared.outbox import run_and_stage

SERVICE = "orders"
router = KafkaRouter()
Settings = Annotated[OrdersSettings, InContext("settings")]


@saga_subscriber(router, SERVICE, topics.ORDERS_COMMANDS)
async def on_place_order(body: dict[str, Any], sessions: Sessions, settings: Settings) -> None:
    # A plain dict: a request that is not a valid PlaceOrder still gets an OrderRejected.
    # No inbox here: the request_id already makes it idempotent, and a publisher that
    # sends a request again must get its answer again.
    catalog = load_catalog(settings.catalog_path)
    timeout = timedelta(seconds=settings.payment_timeout_s)
    await run_and_stage(
        sessions, lambda session: orders.place_order(session, body, catalog, timeout)
    )


@saga_subscriber(router, SERVICE, topics.PAYMENTS_EVENTS)
async def on_payment_event(event: PaymentsEvent, sessions: Sessions) -> None:
    await handle_once(
        sessions, event.event_id, event.type, lambda s: orders.on_payment_event(s, event)
    )


@saga_subscriber(router, SERVICE, topics.PROVISIONING_EVENTS)
async def on_provisioning_event(event: ProvisioningEvent, sessions: Sessions) -> None:
    await handle_once(
        sessions, event.event_id, event.type, lambda s: orders.on_provisioning_event(s, event)
    )
