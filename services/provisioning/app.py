"""Builds the provisioning service: its broker, database and HTTP API."""

from fastapi import FastAPI

from services.provisioning import api, handlers
from services.provisioning.db import metadata
from shared import topics
from shared.service import build_service_app
from shared.settings import ServiceSettings

SERVICE = "provisioning"


def settings() -> ServiceSettings:
    return ServiceSettings(service_name=SERVICE)


def build_app(service_settings: ServiceSettings | None = None) -> FastAPI:
    return build_service_app(
        service_settings or settings(),
        metadata=metadata,
        kafka_router=handlers.router,
        topics=topics.ALL_TOPICS,
        http_router=api.router,
    )
