"""Tracing in memory: the orders router in TestKafkaBroker with an in-memory span
exporter. One trace per order, carried through the outbox; nothing when it is off."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.opentelemetry.middleware import TelemetryMiddleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import select

from services.orders import handlers
from services.orders.db import metadata
from services.orders.settings import OrdersSettings
from shared import outbox, topics, tracing
from shared.events import Money, PaymentCaptured, UsageReported, order_id_for
from shared.kafka import build_broker, message_headers
from shared.logs import ContextFilter
from shared.settings import ServiceSettings
from tests.factories import order_request
from tests.unit.harness import InMemoryService, in_memory_service, running

TRACEPARENT = "traceparent"
FOREIGN_TRACE = "0af7651916cd43dd8448eb211c80319c"
FOREIGN_TRACEPARENT = f"00-{FOREIGN_TRACE}-00f067aa0ba902b7-01"


class Spans:
    """What the process exported so far (flushing the batch processor first)."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def finished(self) -> list[ReadableSpan]:
        assert tracing._provider is not None
        tracing._provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def about(self, order_id: uuid.UUID) -> list[ReadableSpan]:
        return [s for s in self.finished() if (s.attributes or {}).get("order_id") == str(order_id)]


@pytest.fixture
def spans() -> Iterator[Spans]:
    exporter = InMemorySpanExporter()
    tracing.start(ServiceSettings(service_name="orders", tracing_enabled=True), exporter)
    try:
        yield Spans(exporter)
    finally:
        tracing.stop()


async def _orders(tmp_path: Path, enabled: bool) -> AsyncIterator[InMemoryService]:
    settings = OrdersSettings(payment_timeout_s=60, tracing_enabled=enabled)
    async with in_memory_service("orders", handlers.router, metadata, tmp_path, settings) as svc:
        yield svc


@pytest.fixture
async def traced(tmp_path: Path, spans: Spans) -> AsyncIterator[InMemoryService]:
    async for service in _orders(tmp_path, enabled=True):
        yield service


@pytest.fixture
async def untraced(tmp_path: Path) -> AsyncIterator[InMemoryService]:
    assert tracing._provider is None
    async for service in _orders(tmp_path, enabled=False):
        yield service


async def staged_headers(service: InMemoryService) -> list[dict[str, str]]:
    async with service.sessions() as session:
        rows = (await session.execute(select(outbox.outbox.c.headers))).scalars()
        return [json.loads(row) for row in rows]


def trace_of(traceparent: str) -> str:
    return traceparent.split("-")[1]


def captured(order_id: uuid.UUID, iccid: str) -> PaymentCaptured:
    return PaymentCaptured(
        order_id=order_id,
        iccid=iccid,
        amount=Money(amount_minor=1500, currency="EUR"),
        fee=Money(amount_minor=0, currency="EUR"),
        provider_reference="ref-1",
    )


async def placed(
    service: InMemoryService, spans: Spans
) -> tuple[dict[str, Any], list[ReadableSpan]]:
    """Place an order whose charge a watcher consumes: the request and the spans about it."""
    request = order_request()
    service.watch(topics.PAYMENTS_COMMANDS)
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
    return request, spans.about(order_id_for(request["request_id"]))


async def test_a_message_staged_while_handling_an_order_carries_the_orders_traceparent(
    traced: InMemoryService,
) -> None:
    request = order_request()
    async with running(traced.broker):
        await traced.send(topics.ORDERS_COMMANDS, request)

    order_id = order_id_for(request["request_id"])
    headers = await staged_headers(traced)
    assert [h["type"] for h in headers] == ["OrderPlaced", "ChargePayment"]
    assert {trace_of(h[TRACEPARENT]) for h in headers} == {order_id.hex}


async def test_with_tracing_off_the_broker_has_no_telemetry_and_headers_are_unchanged(
    untraced: InMemoryService,
) -> None:
    request = order_request()
    async with running(untraced.broker):
        await untraced.send(topics.ORDERS_COMMANDS, request)

    headers = await staged_headers(untraced)
    assert [set(h) for h in headers] == [{"type", "event_id", "order_id"}] * 2
    assert tracing._provider is None
    middlewares = untraced.broker.config.broker_middlewares
    assert not any(isinstance(m, TelemetryMiddleware) for m in middlewares)
    assert tracing.OrderTrace not in middlewares


def test_tracing_on_adds_the_order_trace_and_telemetry_middlewares(spans: Spans) -> None:
    broker = build_broker(ServiceSettings(service_name="orders", tracing_enabled=True))
    middlewares = list(broker.config.broker_middlewares)
    assert tracing.OrderTrace in middlewares
    assert any(isinstance(m, TelemetryMiddleware) for m in middlewares)


async def test_a_request_without_trace_context_starts_the_trace_named_by_its_order_id(
    traced: InMemoryService, spans: Spans
) -> None:
    request, about = await placed(traced, spans)

    order_id = order_id_for(request["request_id"])
    assert {s.context.trace_id for s in about} == {order_id.int}
    names = {s.name for s in about}
    assert {"orders.commands.v1 create", "orders.commands.v1 process"} <= names
    assert {"payments.commands.v1 create", "payments.commands.v1 publish"} <= names


async def test_the_consumer_of_a_relayed_message_continues_the_handlers_trace(
    traced: InMemoryService, spans: Spans
) -> None:
    _, about = await placed(traced, spans)

    by_id = {s.context.span_id: s for s in about}
    consumed = next(s for s in by_id.values() if s.name == "payments.commands.v1 process")
    assert consumed.parent is not None
    produced = by_id[consumed.parent.span_id]
    assert produced.name == "payments.commands.v1 create"
    assert produced.parent is not None
    assert by_id[produced.parent.span_id].name == "orders.commands.v1 process"


async def test_a_message_staged_outside_any_handler_starts_its_orders_trace(
    traced: InMemoryService, spans: Spans
) -> None:
    order_id, iccid = uuid.uuid4(), order_request()["iccid"]
    async with traced.sessions.begin() as session:
        await outbox.stage(session, [(topics.PAYMENTS_EVENTS, captured(order_id, iccid))])

    (headers,) = await staged_headers(traced)
    assert trace_of(headers[TRACEPARENT]) == order_id.hex
    (stage,) = spans.about(order_id)
    assert stage.name == "stage PaymentCaptured"
    assert stage.parent is None
    assert stage.context.trace_id == order_id.int


async def test_a_message_from_another_trace_joins_its_orders_trace_and_keeps_the_other(
    traced: InMemoryService, spans: Spans
) -> None:
    request = order_request()
    upstream = TraceContextTextMapPropagator().extract({TRACEPARENT: FOREIGN_TRACEPARENT})
    token = otel_context.attach(upstream)  # an internal system that traces its own work
    try:
        async with running(traced.broker):
            await traced.broker.publish(
                request, topic=topics.ORDERS_COMMANDS, key=request["iccid"].encode()
            )
    finally:
        otel_context.detach(token)

    order_id = order_id_for(request["request_id"])
    about = spans.about(order_id)
    assert {s.context.trace_id for s in about} == {order_id.int}
    consumed = next(s for s in about if s.name == "orders.commands.v1 process")
    assert trace_of(str((consumed.attributes or {})[tracing.UPSTREAM])) == FOREIGN_TRACE


async def test_span_attributes_never_show_the_iccid_phone_or_email_unmasked(
    traced: InMemoryService, spans: Spans
) -> None:
    request, about = await placed(traced, spans)

    values = [str(v) for s in about for v in (s.attributes or {}).values()]
    assert values
    for secret in (request["iccid"], request["msisdn"], request["email"]):
        assert not [v for v in values if secret in v]
    keys = {(s.attributes or {}).get("messaging.kafka.message.key") for s in about} - {None}
    assert keys == {request["iccid"][:4] + "*" * 11 + request["iccid"][-4:]}


def test_the_file_exporter_writes_one_json_line_per_span(tmp_path: Path) -> None:
    path = tmp_path / "spans" / "orders.jsonl"
    settings = ServiceSettings(service_name="orders", tracing_enabled=True, tracing_file=str(path))
    exporter = tracing.exporter_for(settings)
    provider = tracing.start(settings, exporter)
    assert provider is not None
    try:
        order_id = uuid.uuid4()
        tracer = provider.get_tracer(__name__)
        with tracing.about_order(order_id), tracer.start_as_current_span("parent"):
            tracer.start_span("child", attributes={"order_id": str(order_id)}).end()
    finally:
        tracing.stop()

    child, parent = (json.loads(line) for line in path.read_text().splitlines())
    assert child["trace_id"] == parent["trace_id"] == order_id.hex
    assert child["parent_span_id"] == parent["span_id"]
    assert parent["parent_span_id"] is None
    assert child["service"] == "orders"
    assert child["attributes"] == {"order_id": str(order_id)}
    assert child["start"] <= child["end"]


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({"otel_exporter_otlp_endpoint": "http://jaeger:4318"}, OTLPSpanExporter),
        ({"tracing_file": "var/log/traces.jsonl"}, tracing.JsonLinesExporter),
        ({}, ConsoleSpanExporter),
    ],
)
def test_the_exporter_is_otlp_when_its_endpoint_is_set_else_the_file_else_the_console(
    settings: dict[str, Any], kind: type[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the file exporter creates its folder
    exporter = tracing.exporter_for(ServiceSettings(service_name="orders", **settings))
    assert isinstance(exporter, kind)


def test_tracing_is_off_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACING_ENABLED", raising=False)
    assert ServiceSettings(service_name="orders").tracing_enabled is False
    assert tracing.start(ServiceSettings(service_name="orders")) is None
    monkeypatch.setenv("TRACING_ENABLED", "true")
    assert ServiceSettings(service_name="orders").tracing_enabled is True


def test_a_log_line_written_in_a_span_carries_its_trace_id(spans: Spans) -> None:
    assert tracing._provider is not None
    record = logging.LogRecord("orders", logging.INFO, __file__, 1, "hello", None, None)
    order_id = uuid.uuid4()
    with (
        tracing.about_order(order_id),
        tracing._provider.get_tracer(__name__).start_as_current_span("handling"),
    ):
        ContextFilter().filter(record)
    assert getattr(record, "trace_id", None) == order_id.hex


def usage_report(iccid: str) -> UsageReported:
    at = datetime(2026, 11, 1, 10, tzinfo=UTC)
    return UsageReported(
        event_id=uuid.uuid4(), iccid=iccid, used_mb=35, period_start=at, period_end=at
    )


async def test_a_usage_report_about_no_order_is_handled_in_a_fresh_trace_of_its_own(
    spans: Spans,
) -> None:
    broker = build_broker(ServiceSettings(service_name="provisioning", tracing_enabled=True))
    handled: list[int] = []

    @broker.subscriber(topics.CARRIER_USAGE, group_id="provisioning:carrier.usage.v1")
    async def on_usage(report: UsageReported) -> None:
        handled.append(trace.get_current_span().get_span_context().trace_id)

    iccid = order_request()["iccid"]
    reports = [usage_report(iccid), usage_report(iccid)]
    async with TestKafkaBroker(broker):
        for report in reports:
            await broker.publish(
                report.model_dump(mode="json"),
                topic=topics.CARRIER_USAGE,
                key=iccid.encode(),
                headers=message_headers(report),
            )

    processed = [s for s in spans.finished() if s.name == "carrier.usage.v1 process"]
    assert len(handled) == len(processed) == 2
    assert len({s.context.trace_id for s in processed}) == 2, "a trace per report"
    assert set(handled) == {s.context.trace_id for s in processed}
    for span in processed:
        attributes = dict(span.attributes or {})
        assert "order_id" not in attributes
        assert attributes["message.type"] == "UsageReported"
        assert attributes["messaging.kafka.message.key"] == iccid[:4] + "*" * 11 + iccid[-4:]
        assert iccid not in str(attributes)


async def test_a_usage_report_staged_outside_any_handler_starts_a_trace_of_its_own(
    spans: Spans,
) -> None:
    report = usage_report(order_request()["iccid"])
    headers = tracing.staged_headers(message_headers(report), topics.CARRIER_USAGE, report)

    (stage,) = [s for s in spans.finished() if s.name == "stage UsageReported"]
    assert stage.parent is None
    assert trace_of(headers[TRACEPARENT]) == f"{stage.context.trace_id:032x}"
    assert "order_id" not in (stage.attributes or {})
    assert "order_id" not in headers


async def test_a_usage_report_staged_in_a_span_continues_it(spans: Spans) -> None:
    assert tracing._provider is not None
    report = usage_report(order_request()["iccid"])
    with tracing._provider.get_tracer(__name__).start_as_current_span("handling") as span:
        headers = tracing.staged_headers(message_headers(report), topics.CARRIER_USAGE, report)
    assert trace_of(headers[TRACEPARENT]) == f"{span.get_span_context().trace_id:032x}"
    assert not [s for s in spans.finished() if s.name.startswith("stage ")]
