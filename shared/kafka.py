"""Kafka plumbing: the broker factory, delivery semantics and keyed publishing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

from faststream import AckPolicy
from faststream._internal.context import Context as FastStreamContext  # pinned (requirements.lock)
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.subscriber.usecase import DefaultSubscriber
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import tracing
from shared.dead_letters import DeadLetters
from shared.events import Envelope, Message
from shared.kafka_access import KafkaClient
from shared.limits import PRODUCER_MAX_REQUEST_BYTES
from shared.logs import LogContext
from shared.metrics import prometheus_middleware
from shared.settings import ServiceSettings
from shared.topic_layout import DEFAULT_PARTITIONS

log = logging.getLogger(__name__)

# Offsets are committed only after the handler (and its database transaction)
# succeeded; a failure seeks back so the message is delivered again. FastStream's
# Kafka default (ACK_FIRST) commits before handling: at-most-once, wrong for a saga.
SAGA_ACK_POLICY: Final = AckPolicy.NACK_ON_ERROR


class InContext(FastStreamContext):
    """FastStream's `Context(name)`, resolved on the event loop.

    FastDepends awaits a coroutine field and runs any other one in a worker thread: the
    stock Context's `use` is a plain function, so every context parameter of every
    handler costs a thread hop per message (3-6% of each service's CPU under load, in
    the benchmark's profile). The lookup is a dictionary read: it runs here, inline."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return super().use(**kwargs)


# Handlers receive the service's session factory through FastStream's context.
Sessions = Annotated[async_sessionmaker[AsyncSession], InContext("sessions")]


def build_broker(settings: ServiceSettings, **context: Any) -> KafkaBroker:
    """One broker per process; an idempotent producer that waits for all replicas."""
    broker = KafkaBroker(
        addresses(settings.kafka_bootstrap_servers),
        security=broker_security(KafkaClient.of(settings)),
        client_id=settings.service_name,
        acks="all",
        enable_idempotence=True,
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,  # shared/limits.py
        logger=logging.getLogger(f"{settings.service_name}.kafka"),
        parser=tolerant_headers,
        # Outermost first: Prometheus sees every message, tracing (when on) spans the
        # handling and the retries, LogContext binds what is logged, DeadLetters what fails.
        middlewares=[
            prometheus_middleware(settings.service_name),
            *tracing.middlewares(settings),
            LogContext,
            DeadLetters,
        ],
    )
    # Handlers reach the settings and anything else the service shares through the context.
    for key, value in {"settings": settings, **context}.items():
        broker.context.set_global(key, value)
    return broker


def addresses(bootstrap_servers: str) -> list[str]:
    """KAFKA_BOOTSTRAP_SERVERS ("host:port,host:port") as FastStream's broker takes them: a
    list (given a string, it takes it whole for one address, commas included)."""
    return [server.strip() for server in bootstrap_servers.split(",") if server.strip()]


def broker_security(client: KafkaClient) -> BaseSecurity | None:
    """FastStream's form of the client's credentials (None: plaintext)."""
    if not client.authenticated:
        return None
    password = client.password.get_secret_value()
    if client.mechanism == "SCRAM-SHA-256":
        return SASLScram256(client.username, password)
    if client.mechanism != "SCRAM-SHA-512":
        raise ValueError(
            f"KAFKA_SASL_MECHANISM: SCRAM-SHA-512 or SCRAM-SHA-256, not {client.mechanism!r}"
        )
    return SASLScram512(client.username, password)


async def tolerant_headers(record: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream decodes every header value as UTF-8 before any middleware runs: one
    that is not would fail the message where no dead letter can catch it (and log the
    whole header, each time). Such values are decoded with replacement characters and the
    message goes on to be handled, or dead-lettered, like any other."""
    headers = record.headers or ()
    try:
        for _name, value in headers:
            (value or b"").decode()
    except UnicodeDecodeError:
        record.headers = [
            (name, (value or b"").decode(errors="replace").encode()) for name, value in headers
        ]
    return await original(record)


def saga_subscriber(router: KafkaRouter, service_name: str, topic: str) -> DefaultSubscriber:
    """A subscriber with its delivery semantics chosen on purpose.

    Its own consumer group per (service, topic) keeps a rebalance of one
    subscriber from pausing the service's others and shows operators lag per
    input; `earliest` so a new group starts at the first message, not the next.

    One consumer per partition (FastStream's concurrency between partitions): the
    partitions of a topic are handled side by side, while each partition, and so
    each line (the key), is still handled one message at a time, in order, with
    its offset committed after its transaction. A message no longer waits behind
    another line's database round trips and provider call.
    """
    return router.subscriber(
        topic,
        group_id=f"{service_name}:{topic}",
        auto_offset_reset="earliest",
        ack_policy=SAGA_ACK_POLICY,
        max_workers=DEFAULT_PARTITIONS,
    )


def message_headers(message: Envelope) -> dict[str, str]:
    """What consumers and operators read without parsing the body (shared/logs.py);
    `order_id` on every message about an order (all but the carrier's usage reports)."""
    headers = {"type": message.type, "event_id": str(message.event_id)}
    if isinstance(message, Message):
        headers["order_id"] = str(message.order_id)
    return headers


Outgoing = tuple[str, Message]
"""A message to publish and its topic: what the domain functions return."""
