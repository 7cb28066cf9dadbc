"""Provisioning's subscribers: parse, call one function, publish (through the outbox)."""

from typing import Annotated

from faststream.kafka import KafkaRouter

from services.provisioning import provisioning, renewals, usage
from services.provisioning.provisioning import PROVISIONER, Provisioner
from services.provisioning.settings import SERVICE
from shared import topics
from shared.events import OrdersEvent, TopUpLine, UsageReported
from shared.kafka import InContext, Sessions, saga_subscriber

router = KafkaRouter()

# The carrier and the rules, set in the broker's context by app.py (or a test).
ProvisionerDep = Annotated[Provisioner, InContext(PROVISIONER)]


@saga_subscriber(router, SERVICE, topics.PROVISIONING_COMMANDS)
async def on_top_up_line(
    command: TopUpLine, sessions: Sessions, provisioner: ProvisionerDep
) -> None:
    await provisioning.top_up(sessions, provisioner, command)


@saga_subscriber(router, SERVICE, topics.CARRIER_USAGE)
async def on_usage_reported(
    report: UsageReported, sessions: Sessions, provisioner: ProvisionerDep
) -> None:
    await usage.record_usage(sessions, provisioner, report)


@saga_subscriber(router, SERVICE, topics.ORDERS_EVENTS)
async def on_order_event(
    event: OrdersEvent, sessions: Sessions, provisioner: ProvisionerDep
) -> None:
    # Only renewal orders matter here (their request_id says so); the rest are skipped
    # without touching the database.
    await renewals.on_order_event(sessions, provisioner, event)
