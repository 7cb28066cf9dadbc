"""What every HTTP request meets before any endpoint runs, in this order:

1. a bounded path and query string (414 beyond MAX_PATH_BYTES / MAX_QUERY_BYTES), each
   query parameter given once (422: which value would count?);
2. authentication, for anything but the public paths (401: shared/access.py), before a
   byte of the body is read, so an anonymous caller cannot make a service read anything;
3. a bounded body (413 beyond MAX_BODY_BYTES, told by Content-Length or counted while
   reading; 400 for a Content-Length that is not a number);

and on the way out, security headers on every answer (nosniff, a Content-Security-Policy
that forbids framing, no referrer, no caching of answers that need a token).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.responses import JSONResponse

from shared.access import Refusal, authenticate, callers_of, refused
from shared.http_errors import answer_errors_safely, bounded_errors

MAX_PATH_BYTES: Final = 1024
MAX_QUERY_BYTES: Final = 8 * 1024  # a 200-character value, percent-encoded, is 2,400 bytes
MAX_BODY_BYTES: Final = 64 * 1024
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Public: what load balancers, Prometheus and API clients read without a token.
PUBLIC_PATHS: Final = frozenset({"/health", "/metrics", "/metrics/", "/openapi.json"})

API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP: Final = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TooLarge(Exception):
    pass


class Guard:
    """Pure ASGI middleware (it must see the body before FastAPI reads it)."""

    def __init__(
        self,
        app: ASGIApp,
        public_paths: frozenset[str] = PUBLIC_PATHS,
        public_prefixes: tuple[str, ...] = (),
        csp: str = API_CSP,
    ) -> None:
        self.app = app
        self.public_paths = public_paths
        self.public_prefixes = public_prefixes
        self.csp = csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_headers(send)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if len(raw_path) > MAX_PATH_BYTES or len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            detail = f"the path may be {MAX_PATH_BYTES} bytes and the query {MAX_QUERY_BYTES}"
            await _answer(scope, receive, send, 414, detail)
            return
        if repeated := _repeated_parameter(scope.get("query_string", b"")):
            given_twice = [
                {"loc": ["query", repeated], "msg": "given twice", "type": "value_error"}
            ]
            await _answer(scope, receive, send, 422, bounded_errors(given_twice))
            return
        if not self._public(scope["path"]):
            given = [v for k, v in scope.get("headers", ()) if k.lower() == b"authorization"]
            try:
                if len(given) > 1:  # which one counts? None: each reader could pick another
                    raise refused(401, "malformed", "send one Authorization header, not several")
                token = given[0].decode("latin-1") if given else None
                caller = authenticate(token, callers_of(scope["app"]))
            except Refusal as refusal:
                extra = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
                await _answer(scope, receive, send, refusal.status, refusal.detail, extra)
                return
            scope.setdefault("state", {})["caller"] = caller
        declared = _headers(scope).get("content-length")
        if declared is not None and not declared.strip().isdigit():
            await _answer(scope, receive, send, 400, "Content-Length must be a number of bytes")
            return
        if declared is not None and int(declared) > MAX_BODY_BYTES:
            await _answer(scope, receive, send, 413, _too_large())
            return
        if scope["method"] in BODY_METHODS or declared:
            try:
                body = await _read_body(receive)
            except TooLarge:
                await _answer(scope, receive, send, 413, _too_large())
                return
            receive = _replaying(body, receive)
        await self.app(scope, receive, send)

    def _public(self, path: str) -> bool:
        return path in self.public_paths or path.startswith(self.public_prefixes)

    def _with_headers(self, send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                names = {name.lower() for name, _ in headers}
                for name, value in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", self.csp.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ):
                    if name not in names:
                        headers.append((name, value))
            await send(message)

        return sending


def secure(
    app: FastAPI,
    *,
    public_paths: frozenset[str] = PUBLIC_PATHS,
    public_prefixes: tuple[str, ...] = (),
    csp: str = API_CSP,
) -> None:
    """The guard in front of `app`, and its refusals bounded and masked (http_errors)."""
    app.add_middleware(Guard, public_paths=public_paths, public_prefixes=public_prefixes, csp=csp)
    answer_errors_safely(app)


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }


def _repeated_parameter(query: bytes) -> str | None:
    """A query parameter given twice (every one of ours takes one value): which one."""
    seen: set[str] = set()
    for name, _value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name
        seen.add(name)
    return None


def _too_large() -> str:
    return f"the request body may be at most {MAX_BODY_BYTES} bytes"


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body read already, then whatever comes next (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    detail: str | list[dict[str, Any]],
    headers: dict[str, str] | None = None,
) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response(scope, receive, send)
