"""Orders' settings: the common ones plus the payment deadline and the catalog file."""

from pathlib import Path

from pydantic import Field

from services.orders.catalog import DEFAULT_CATALOG
from shared.settings import ServiceSettings


class OrdersSettings(ServiceSettings):
    service_name: str = "orders"
    payment_timeout_s: float = Field(default=900.0, gt=0, description="then the order EXPIRES")
    expiry_sweep_interval_s: float = Field(default=1.0, gt=0)
    stuck_after_s: float = Field(default=120.0, gt=0, description="first nudge of a stuck saga")
    stuck_backoff_max_s: float = Field(default=3600.0, gt=0)
    catalog_path: Path = DEFAULT_CATALOG
