"""Asking a Kafka cluster's admin API when a broker of it may be down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)
T = TypeVar("T")


async def patiently(call: Callable[[], Awaitable[T]]) -> T:
    """`call`, asked again while it fails for a reason that passes: on a cluster with a
    broker down, the admin client may first pick that broker (NodeNotReadyError)."""
    for delay in (0.2, 0.5, 1, 2, 4, 8, None):
        try:
            return await call()
        except KafkaError as error:
            if not error.retriable or delay is None:
                raise
            log.info("the cluster did not answer (%r); asking again in %ss", error, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last try returns or raises")
