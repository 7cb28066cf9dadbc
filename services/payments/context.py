"""What payments keeps in the broker's context beside the sessions: handlers receive
it as typed arguments, the settler reads it from its runtime."""

from typing import Annotated, cast

from faststream.kafka import KafkaBroker

from services.payments.backoff import Backoff
from services.payments.provider import PaymentProvider
from shared.batches import Context
from shared.kafka import InContext
from shared.late_answers import INLINE, LateAnswers

_PROVIDER = "payment_provider"
_BACKOFF = "payment_backoff"
_LATE = "late_answers"

Provider = Annotated[PaymentProvider, InContext(_PROVIDER)]
Checks = Annotated[Backoff, InContext(_BACKOFF)]
Late = Annotated[LateAnswers, InContext(_LATE, default=INLINE)]


def provide(
    broker: KafkaBroker, provider: PaymentProvider, backoff: Backoff, late: LateAnswers = INLINE
) -> None:
    broker.context.set_global(_PROVIDER, provider)
    broker.context.set_global(_BACKOFF, backoff)
    broker.context.set_global(_LATE, late)


def provider_in(where: KafkaBroker | Context) -> PaymentProvider:
    return cast(PaymentProvider, _context(where).get(_PROVIDER))


def backoff_in(context: Context) -> Backoff:
    return cast(Backoff, context.get(_BACKOFF))


def late_in(context: Context) -> LateAnswers:
    return cast(LateAnswers, context.get(_LATE, INLINE))


def _context(where: KafkaBroker | Context) -> Context:
    return where.context if isinstance(where, KafkaBroker) else where
