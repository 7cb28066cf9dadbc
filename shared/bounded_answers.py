"""Answers from the outside world, read to a bound.

A payment provider or a carrier is outside our control: an answer of hundreds of
megabytes (a fault, a proxy's error page gone wrong, an attacker in the path) would be
read whole into memory by an HTTP client, and parsed. Every adapter's HTTP client reads
through `BoundedTransport`: an answer that declares, or turns out to carry, more than
`MAX_ANSWER_BYTES` is broken off as a transport error (`AnswerTooLarge`), which the
adapters already read as "no usable answer": unknown after a call that may have acted,
unavailable after one that did not.

The bound is on what is read, so nothing may grow after it: every request asks for the
answer as is (`Accept-Encoding: identity`), and an answer compressed anyway is refused
unread (a few hundred bytes of nested gzip unpack to gigabytes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import httpx

# Stripe's and the partner API's largest answers (a page of 100 objects) are well below.
MAX_ANSWER_BYTES: Final = 1024 * 1024


class AnswerTooLarge(httpx.RemoteProtocolError):
    """The answer is larger than we read: broken off, as a connection that broke."""


class _BoundedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int, request: httpx.Request) -> None:
        self._inner = inner
        self._limit = limit
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = 0
        async for chunk in self._inner:
            read += len(chunk)
            if read > self._limit:
                raise AnswerTooLarge(
                    f"an answer over {self._limit} bytes, broken off", request=self._request
                )
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedTransport(httpx.AsyncBaseTransport):
    """`inner` (by default httpx's own), with every answer's body read to `limit` bytes."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport | None = None, limit: int = MAX_ANSWER_BYTES
    ) -> None:
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        response = await self._inner.handle_async_request(request)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            await response.aclose()
            raise AnswerTooLarge(
                "a compressed answer (Content-Encoding), not read: its size is unknown",
                request=request,
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared[:20]) > self._limit:
            await response.aclose()
            raise AnswerTooLarge(
                f"an answer of {int(declared[:20])} bytes declared, over {self._limit}",
                request=request,
            )
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):  # no transport of httpx's own
            await response.aclose()
            raise AnswerTooLarge("an answer that cannot be read to a bound", request=request)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_BoundedStream(stream, self._limit, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
