"""Handlers' context parameters (the sessions, the provider, the settings...) are looked up
on the event loop: FastDepends would run FastStream's stock Context lookup in a worker
thread, a thread hop per parameter per message."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fast_depends.utils import is_coroutine_callable
from faststream.kafka import KafkaBroker, TestKafkaBroker

from shared.kafka import InContext


def test_a_context_parameter_is_resolved_as_a_coroutine_not_in_a_thread() -> None:
    assert is_coroutine_callable(InContext("sessions").use)


async def test_a_handler_gets_its_context_values_from_the_event_loops_thread() -> None:
    broker = KafkaBroker()
    broker.context.set_global("greeting", "hello")
    seen: list[tuple[str, str]] = []
    resolved_in: list[str] = []

    class Spy(InContext):
        async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
            resolved_in.append(threading.current_thread().name)
            return await super().use(**kwargs)

    @broker.subscriber("greetings")
    async def greet(body: str, greeting: Annotated[str, Spy("greeting")]) -> None:
        seen.append((greeting, body))

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish("world", "greetings")
    assert seen == [("hello", "world")]
    assert resolved_in == [threading.main_thread().name]
