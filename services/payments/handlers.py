"""Payments' subscriber: parse, call one function, publish.

A command's first transaction records its intent; the provider is called after it
commits, and a transaction of its own records the answer (see payments.py). Commands
are handled in batches (shared/batches.py): one transaction records the intents of
a batch (its charges in one statement), and their calls go out side by side; two
commands about one payment are never in one transaction, and the second waits for the
first's call."""

from typing import Any

from faststream.kafka import KafkaRouter
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments import payments
from services.payments.context import Checks, Late, Provider, backoff_in, late_in, provider_in
from shared import topics
from shared.batches import Context, after_commit, in_batches
from shared.events import PaymentsCommand
from shared.kafka import Outgoing, Sessions, saga_subscriber
from shared.outbox import Step

SERVICE = "payments"
router = KafkaRouter()

commands = saga_subscriber(router, SERVICE, topics.PAYMENTS_COMMANDS)
_command = TypeAdapter[Any](PaymentsCommand)


async def _settled(key: str, context: Context) -> None:
    await late_in(context).settled(key)


async def _record_charges(session: AsyncSession, commands: list[Any], context: Context) -> None:
    await payments.record_charges(session, backoff_in(context), commands)


@in_batches(
    commands, _command.validate_json,
    key=payments.key_of, settle=_settled, prepare=_record_charges,
)  # fmt: skip
def command_step(command: Any, context: Context) -> Step:
    sessions, provider, backoff = context.get("sessions"), provider_in(context), backoff_in(context)
    late = late_in(context)

    async def step(session: Any) -> list[Outgoing]:
        outgoing, call = await payments.intend(session, sessions, provider, backoff, command)
        if call is not None:
            after_commit(session, lambda: call.made(late))
        return outgoing

    return step


@commands
async def on_payments_command(
    command: PaymentsCommand,
    sessions: Sessions,
    provider: Provider,
    backoff: Checks,
    late: Late,
) -> None:
    await payments.handle(sessions, provider, backoff, command, late)
