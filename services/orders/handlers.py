"""Orders' subscribers: parse, call one function in one transaction, publish."""

from datetime import timedelta
from typing import Annotated, Any

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker

from services.orders import orders
from services.orders.catalog import load_catalog
from services.orders.settings import OrdersSettings
from shared import topics
from shared.events import PaymentsEvent, ProvisioningEvent
from shared.kafka import Sessions, publish_all, saga_subscriber

SERVICE = "orders"
router = KafkaRouter()
Settings = Annotated[OrdersSettings, Context("settings")]


@saga_subscriber(router, SERVICE, topics.ORDERS_COMMANDS)
async def on_place_order(
    body: dict[str, Any], sessions: Sessions, broker: KafkaBroker, settings: Settings
) -> None:
    # A plain dict: a request that is not a valid PlaceOrder still gets an OrderRejected.
    catalog = load_catalog(settings.catalog_path)
    timeout = timedelta(seconds=settings.payment_timeout_s)
    async with sessions.begin() as session:
        outgoing = await orders.place_order(session, body, catalog, timeout)
    await publish_all(broker, outgoing)


@saga_subscriber(router, SERVICE, topics.PAYMENTS_EVENTS)
async def on_payment_event(event: PaymentsEvent, sessions: Sessions, broker: KafkaBroker) -> None:
    async with sessions.begin() as session:
        outgoing = await orders.on_payment_event(session, event)
    await publish_all(broker, outgoing)


@saga_subscriber(router, SERVICE, topics.PROVISIONING_EVENTS)
async def on_provisioning_event(
    event: ProvisioningEvent, sessions: Sessions, broker: KafkaBroker
) -> None:
    async with sessions.begin() as session:
        outgoing = await orders.on_provisioning_event(session, event)
    await publish_all(broker, outgoing)
