"""Handler-level tests: a service's router in a fresh broker (run in memory by
FastStream's TestKafkaBroker) with the service's tables in a temporary SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker, KafkaRouter, TestKafkaBroker
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import db, outbox
from shared.events import Envelope
from shared.kafka import build_broker, message_headers
from shared.settings import ServiceSettings


class InMemoryService:
    def __init__(self, broker: KafkaBroker, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.broker = broker
        self.sessions = sessions
        self.seen: dict[str, list[dict[str, Any]]] = {}

    def watch(self, topic: str) -> list[dict[str, Any]]:
        """Collect what the service publishes to `topic` (call before `running`)."""
        seen = self.seen.setdefault(topic, [])

        @self.broker.subscriber(topic, group_id=f"test-watch:{topic}")
        async def collect(body: dict[str, Any]) -> None:
            seen.append(body)

        return seen

    async def send(self, topic: str, message: Envelope | dict[str, Any]) -> None:
        """Publish a message (or a raw body, as a careless publisher might)."""
        if isinstance(message, Envelope):
            # As the outbox relay publishes: keyed by the line, with the message headers.
            await self.broker.publish(
                message.model_dump(mode="json"),
                topic=topic,
                key=message.iccid.encode(),
                headers=message_headers(message),
            )
        else:
            await self.broker.publish(message, topic=topic, key=str(message.get("iccid")).encode())
        await self.relay()

    async def relay(self) -> None:
        """What the outbox relay does in a running service: publish every staged row
        (which may make the in-memory handlers stage more), until none is left."""
        while await outbox.drain(self.sessions, self.broker):
            pass


@asynccontextmanager
async def sqlite_sessions(
    path: Path, metadata: MetaData
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a fresh SQLite file holding `metadata`'s tables, disposed of after."""
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    await db.create_schema(engine, metadata)
    try:
        yield db.sessions_for(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def in_memory_service(
    name: str,
    router: KafkaRouter,
    metadata: MetaData,
    tmp_path: Path,
    settings: ServiceSettings | None = None,
) -> AsyncIterator[InMemoryService]:
    async with sqlite_sessions(tmp_path / f"{name}.db", metadata) as sessions:
        broker = build_broker(settings or ServiceSettings(service_name=name), sessions=sessions)
        broker.include_router(router)
        yield InMemoryService(broker, sessions)


running = TestKafkaBroker
