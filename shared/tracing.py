"""Tracing: one OpenTelemetry trace per order, across the three services.

Off unless `TRACING_ENABLED=true`; then every consumed message gets FastStream's
consumer spans (`<topic> create` when it arrived without a trace context,
`<topic> process`) and every publish its producer spans, with the W3C
`traceparent` carried in the Kafka headers. Two things make it one trace per order:

- The outbox breaks the in-process context (a handler stages, the relay publishes
  later, from another task): `stage` writes the current trace context into the
  row's headers and the relay publishes under it (`continued`), so the consumer
  on the other side continues the handler's trace.
- Some messages have no incoming context at all: a PlaceOrder from an internal
  system, or what a background loop (settler, retrier, deadline sweeper) emits.
  A span that starts a trace about an order gets the order id as its trace id
  (`OrderTraceIds`; a UUID is 128 bits, like a trace id), so they join the same
  trace, and an operator finds an order's trace by its id: trace id = the order
  id's hex digits. A context from outside (another system's trace) is not
  followed: it is kept as the `upstream.traceparent` attribute.
- A message about no order (the carrier's `UsageReported`: no `order_id`, in its
  body or its headers) starts a trace of its own, with a random id, or continues
  the trace context it carries.

Exporter: OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (Jaeger, a
collector), else JSON lines into `TRACING_FILE`, else JSON lines on stdout.
Attributes name the topic, partition, offset, type, event id and order id; the
message key (the line's ICCID) is masked as in the logs. See docs/tracing.md.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from faststream import BaseMiddleware
from faststream.kafka.opentelemetry.provider import KafkaTelemetrySettingsProvider
from faststream.kafka.response import KafkaPublishCommand
from faststream.message import StreamMessage
from faststream.opentelemetry.middleware import TelemetryMiddleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.semconv.trace import SpanAttributes
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.events import Envelope, Message, order_id_for
from shared.logs import mask
from shared.settings import ServiceSettings

TRACE_HEADERS: Final = ("traceparent", "tracestate")
UPSTREAM: Final = "upstream.traceparent"

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None  # set while tracing is on in this process
_order: ContextVar[uuid.UUID | None] = ContextVar("traced_order", default=None)


# --- the switch: a provider per process, or nothing at all ----------------------------


def start(settings: ServiceSettings, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """The process's tracer provider, created on first use; None when tracing is off."""
    global _provider
    if not settings.tracing_enabled:
        return None
    if _provider is None:
        _provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: settings.service_name}),
            id_generator=OrderTraceIds(),
        )
        _provider.add_span_processor(BatchSpanProcessor(exporter or exporter_for(settings)))
    return _provider


def stop() -> None:
    """Export what is buffered and turn tracing off (on service stop)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


def middlewares(settings: ServiceSettings) -> list[Any]:
    """The broker middlewares tracing needs (shared/kafka.py); none when it is off."""
    provider = start(settings)
    if provider is None:
        return []
    telemetry = TelemetryMiddleware[KafkaPublishCommand](
        settings_provider_factory=lambda _raw: MaskedKafkaAttributes(),
        tracer_provider=provider,
    )
    return [OrderTrace, telemetry]


def exporter_for(settings: ServiceSettings) -> SpanExporter:
    if settings.otel_exporter_otlp_endpoint:
        # What the SDK itself does with OTEL_EXPORTER_OTLP_ENDPOINT: the traces path under it.
        base = settings.otel_exporter_otlp_endpoint.rstrip("/")
        return OTLPSpanExporter(endpoint=f"{base}/v1/traces")
    if settings.tracing_file:
        return JsonLinesExporter(Path(settings.tracing_file))
    return ConsoleSpanExporter(out=sys.stdout, formatter=span_line)


# --- one trace per order --------------------------------------------------------------


class OrderTraceIds(RandomIdGenerator):
    """A span that starts a trace about an order starts that order's trace."""

    def generate_trace_id(self) -> int:
        order = _order.get()
        return order.int if order is not None else super().generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return False  # order ids are UUIDv5: hashed, not drawn at random


@contextmanager
def about_order(order_id: uuid.UUID | None) -> Iterator[None]:
    """Spans started here without a parent belong to `order_id`'s trace."""
    token = _order.set(order_id)
    try:
        yield
    finally:
        _order.reset(token)


def order_of(msg: StreamMessage[Any]) -> uuid.UUID | None:
    """The order a consumed message is about: its `order_id` header (our publishers set
    it), else its body's order id, or the one its request id names (a PlaceOrder)."""
    if "order_id" in msg.headers:
        return _uuid(msg.headers["order_id"])
    try:
        body = json.loads(msg.body)
    except (ValueError, RecursionError):
        return None  # dead-lettered further in; nothing to trace it by
    if not isinstance(body, dict):
        return None
    if body.get("order_id") is not None:
        return _uuid(body["order_id"])
    if "request_id" in body:
        return order_id_for(str(body["request_id"]))
    return None


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _from_another_trace(order: uuid.UUID, headers: Mapping[str, Any]) -> bool:
    if "traceparent" not in headers:
        return False
    span = trace.get_current_span(_propagator.extract(headers)).get_span_context()
    return span.trace_id != order.int


class OrderTrace(BaseMiddleware):
    """Puts every consumed message in its order's trace (outside FastStream's telemetry
    middleware, which creates the spans): a message without a trace context starts
    the order's trace; one from another trace is not followed, only recorded."""

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        order = order_of(msg)
        if order is not None and _from_another_trace(order, msg.headers):
            headers = {k: v for k, v in msg.headers.items() if k not in TRACE_HEADERS}
            msg.headers = {**headers, UPSTREAM: msg.headers["traceparent"]}
        # A consumer continues what the headers carry, nothing of the process it runs in.
        token = otel_context.attach(Context())
        try:
            with about_order(order):
                return await call_next(msg)
        finally:
            otel_context.detach(token)


class MaskedKafkaAttributes(KafkaTelemetrySettingsProvider):
    """FastStream's Kafka span attributes, plus what the message is about, with the key
    (the line's ICCID) masked."""

    def get_consume_attrs_from_message(self, msg: StreamMessage[Any]) -> dict[str, Any]:
        attributes = _masked(super().get_consume_attrs_from_message(msg))
        order = _order.get()
        if order is not None:
            attributes["order_id"] = str(order)
        if UPSTREAM in msg.headers:
            attributes[UPSTREAM] = str(msg.headers[UPSTREAM])
        return {**attributes, **_about(msg.headers)}

    def get_publish_attrs_from_cmd(self, cmd: KafkaPublishCommand) -> dict[str, Any]:
        return {**_masked(super().get_publish_attrs_from_cmd(cmd)), **_about(cmd.headers)}


def _masked(attributes: dict[str, Any]) -> dict[str, Any]:
    key = attributes.get(SpanAttributes.MESSAGING_KAFKA_MESSAGE_KEY)
    if isinstance(key, bytes):
        key = key.decode(errors="replace")
    if key is not None:
        attributes[SpanAttributes.MESSAGING_KAFKA_MESSAGE_KEY] = mask(str(key))
    return attributes


def _about(headers: Mapping[str, Any]) -> dict[str, str]:
    names = {"order_id": "order_id", "event_id": "event_id", "type": "message.type"}
    return {attribute: str(headers[name]) for name, attribute in names.items() if name in headers}


# --- across the outbox ---------------------------------------------------------------


def staged_headers(headers: dict[str, str], topic: str, message: Envelope) -> dict[str, str]:
    """`headers` plus the trace context to publish `message` under (shared/outbox.py).

    In a handler about the same order, that is the handler's span; anywhere else (a
    background loop, or a handler about another order) a `stage` span that starts
    or joins the message's order trace, linked to the span that staged it if any.
    A message about no order (the carrier's usage report) goes under the current span,
    or, outside any, under a `stage` span of a trace of its own.
    """
    if _provider is None:
        return headers
    order = message.order_id if isinstance(message, Message) else None
    current = trace.get_current_span().get_span_context()
    context = otel_context.get_current()
    if not (current.is_valid and (order is None or current.trace_id == order.int)):
        with about_order(order):
            span = _provider.get_tracer(__name__).start_span(
                f"stage {message.type}",
                context=Context(),  # no parent: the order's trace id, from OrderTraceIds
                kind=SpanKind.INTERNAL,
                links=[Link(current)] if current.is_valid else None,
                attributes={SpanAttributes.MESSAGING_DESTINATION_NAME: topic, **_about(headers)},
            )
        span.end()
        context = trace.set_span_in_context(span, Context())
    carrier = dict(headers)
    _propagator.inject(carrier, context=context)
    return carrier


@contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    """Publish under the trace context a staged message carries (the outbox relay), so
    the relay's publish continues the trace that staged it instead of starting one."""
    if _provider is None:
        yield
        return
    token = otel_context.attach(_propagator.extract(headers, context=Context()))
    try:
        with about_order(_uuid(headers.get("order_id"))):
            yield
    finally:
        otel_context.detach(token)


# --- JSON lines: the file exporter (tests, `make run`) and the console one -----------


class JsonLinesExporter(SpanExporter):
    """One span per line, appended to a file. Each batch is one unbuffered append, so
    the three services may share a file (each line names its service)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span_line(span) for span in spans).encode()
        with self.path.open("ab", buffering=0) as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


def span_line(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None  # an SDK span always has one
    record = {
        "trace_id": trace.format_trace_id(context.trace_id),
        "span_id": trace.format_span_id(context.span_id),
        "parent_span_id": trace.format_span_id(span.parent.span_id) if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get(SERVICE_NAME),
        "start": _iso(span.start_time),
        "end": _iso(span.end_time),
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "trace_id": trace.format_trace_id(link.context.trace_id),
                "span_id": trace.format_span_id(link.context.span_id),
            }
            for link in span.links
        ],
    }
    return json.dumps(record, default=str) + "\n"


def _iso(ns: int | None) -> str | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC).isoformat()
