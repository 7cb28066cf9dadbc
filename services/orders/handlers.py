"""Orders' subscribers: parse, call one function in one transaction, publish."""

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker

from services.orders import orders
from shared import topics
from shared.events import LineToppedUp, PaymentCaptured, PlaceOrder
from shared.kafka import Sessions, publish_all, saga_subscriber

SERVICE = "orders"
router = KafkaRouter()


@saga_subscriber(router, SERVICE, topics.ORDERS_COMMANDS)
async def on_place_order(command: PlaceOrder, sessions: Sessions, broker: KafkaBroker) -> None:
    async with sessions.begin() as session:
        outgoing = await orders.place_order(session, command)
    await publish_all(broker, outgoing)


@saga_subscriber(router, SERVICE, topics.PAYMENTS_EVENTS)
async def on_payment_event(event: PaymentCaptured, sessions: Sessions, broker: KafkaBroker) -> None:
    async with sessions.begin() as session:
        outgoing = await orders.record_payment_captured(session, event)
    await publish_all(broker, outgoing)


@saga_subscriber(router, SERVICE, topics.PROVISIONING_EVENTS)
async def on_provisioning_event(
    event: LineToppedUp, sessions: Sessions, broker: KafkaBroker
) -> None:
    async with sessions.begin() as session:
        outgoing = await orders.record_line_topped_up(session, event)
    await publish_all(broker, outgoing)
