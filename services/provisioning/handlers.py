"""Provisioning's subscribers: parse, call one function, publish (through the outbox).

Each topic is handled in batches (shared/batches.py); the step below a subscriber is what
one message does, in a batch's transaction or alone. Top-ups: one transaction records the
top-ups of a batch (a statement per table), and their carrier calls go out side by side
after it commits; two commands about one top-up are never in one transaction, and the
second waits for the first's call."""

from typing import Annotated, Any, cast

from faststream.kafka import KafkaRouter
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from services.provisioning import provisioning, renewals, usage
from services.provisioning.provisioning import PROVISIONER, Provisioner
from services.provisioning.settings import SERVICE
from shared import topics
from shared.batches import Context, after_commit, in_batches
from shared.events import OrdersEvent, TopUpLine, UsageReported
from shared.kafka import InContext, Outgoing, Sessions, saga_subscriber
from shared.outbox import Step

router = KafkaRouter()

# The carrier and the rules, set in the broker's context by app.py (or a test).
ProvisionerDep = Annotated[Provisioner, InContext(PROVISIONER)]


top_ups = saga_subscriber(router, SERVICE, topics.PROVISIONING_COMMANDS)


def _provisioner(context: Context) -> Provisioner:
    return cast(Provisioner, context.get(PROVISIONER))


async def _settled(key: str, context: Context) -> None:
    await _provisioner(context).late.settled(key)


async def _record_top_ups(
    session: AsyncSession, commands: list[TopUpLine], context: Context
) -> None:
    await provisioning.record_top_ups(session, _provisioner(context), commands)


@in_batches(
    top_ups,
    TypeAdapter(TopUpLine).validate_json,
    key=lambda command: command.idempotency_key,
    settle=_settled,
    prepare=_record_top_ups,
)
def top_up_step(command: TopUpLine, context: Context) -> Step:
    sessions, provisioner = context.get("sessions"), _provisioner(context)

    async def step(session: AsyncSession) -> list[Outgoing]:
        outgoing, call = await provisioning.top_up_intent(session, sessions, provisioner, command)
        if call is not None:
            after_commit(session, lambda: call.made(provisioner.late))
        return outgoing

    return step


@top_ups
async def on_top_up_line(
    command: TopUpLine, sessions: Sessions, provisioner: ProvisionerDep
) -> None:
    await provisioning.top_up(sessions, provisioner, command)


usage_reports = saga_subscriber(router, SERVICE, topics.CARRIER_USAGE)
order_events = saga_subscriber(router, SERVICE, topics.ORDERS_EVENTS)


@in_batches(usage_reports, TypeAdapter(UsageReported).validate_json)
def usage_step(report: UsageReported, context: Context) -> Step:
    provisioner = _provisioner(context)
    return lambda session: usage.count_usage(session, provisioner, report)


@in_batches(order_events, TypeAdapter[Any](OrdersEvent).validate_json)
def order_event_step(event: Any, context: Context) -> Step:
    provisioner = _provisioner(context)
    return lambda session: renewals.settle_renewal(session, provisioner, event)


@usage_reports
async def on_usage_reported(
    report: UsageReported, sessions: Sessions, provisioner: ProvisionerDep
) -> None:
    await usage.record_usage(sessions, provisioner, report)


@order_events
async def on_order_event(
    event: OrdersEvent, sessions: Sessions, provisioner: ProvisionerDep
) -> None:
    # Only renewal orders matter here (their request_id says so); the rest are skipped
    # without touching the database.
    await renewals.on_order_event(sessions, provisioner, event)
