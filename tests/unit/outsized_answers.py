"""Answers no honest provider or carrier sends, for the adapters' tests: endless, or
compressed into a bomb. Each is a stream, as it comes off the wire (httpx would unpack
bytes given to a Response whole)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

CHUNK = 65_536


def endless(chunks_sent: list[int], chunks: int = 10_000) -> AsyncIterator[bytes]:
    """640 MB, if anyone read it all; `chunks_sent` counts what was asked for."""

    async def body() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            chunks_sent.append(1)
            yield b"x" * CHUNK

    return body()


def gzip_bomb(unpacked_bytes: int = 50_000_000) -> AsyncIterator[bytes]:
    """A JSON object of `unpacked_bytes`, gzipped twice: a few hundred bytes on the wire."""
    packed = gzip.compress(gzip.compress(b"{" + b" " * unpacked_bytes + b"}"))

    async def body() -> AsyncIterator[bytes]:
        yield packed

    return body()
