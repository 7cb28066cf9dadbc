"""Builds the orders service: its broker, database, HTTP API and deadline sweeper."""

from pathlib import Path

from fastapi import FastAPI

from services.orders import api, handlers
from services.orders.deadlines import deadline_sweeper
from services.orders.settings import OrdersSettings
from shared import topics
from shared.service import build_service_app
from shared.settings import ServiceSettings, specialise


def settings() -> OrdersSettings:
    return OrdersSettings()


def build_app(service_settings: ServiceSettings | None = None) -> FastAPI:
    return build_service_app(
        specialise(service_settings, OrdersSettings),
        migrations=Path(__file__).parent / "migrations",
        kafka_router=handlers.router,
        topics=topics.ALL_TOPICS,
        http_router=api.router,
        background=[deadline_sweeper],
    )
