"""Payments' subscribers: parse, call one function in one transaction, publish."""

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker

from services.payments import payments
from shared import topics
from shared.events import ChargePayment
from shared.kafka import Sessions, publish_all, saga_subscriber

SERVICE = "payments"
router = KafkaRouter()


@saga_subscriber(router, SERVICE, topics.PAYMENTS_COMMANDS)
async def on_charge_payment(
    command: ChargePayment, sessions: Sessions, broker: KafkaBroker
) -> None:
    async with sessions.begin() as session:
        outgoing = await payments.charge(session, command)
    await publish_all(broker, outgoing)
