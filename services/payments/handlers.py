"""Payments' subscriber: parse, call one function, publish.

The function runs its own transactions, because the provider is called between
two of them (see payments.py).
"""

from faststream.kafka import KafkaRouter

from services.payments import payments
from services.payments.context import Checks, Late, Provider
from shared import topics
from shared.events import PaymentsCommand
from shared.kafka import Sessions, saga_subscriber

SERVICE = "payments"
router = KafkaRouter()


@saga_subscriber(router, SERVICE, topics.PAYMENTS_COMMANDS)
async def on_payments_command(
    command: PaymentsCommand,
    sessions: Sessions,
    provider: Provider,
    backoff: Checks,
    late: Late,
) -> None:
    await payments.handle(sessions, provider, backoff, command, late)
