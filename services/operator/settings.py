"""The operator's settings: the common ones (no database of its own) plus where orders
answers, the operators' tokens and how long a saga may stand still."""

from pydantic import Field

from shared.kafka_access import KafkaClient
from shared.settings import ServiceSettings


class OperatorSettings(ServiceSettings):
    service_name: str = "operator"  # HTTP_PORT unset: port 8000
    orders_url: str = "http://127.0.0.1:8001"
    payments_url: str = "http://127.0.0.1:8002"  # their /health only: the Services panel
    provisioning_url: str = "http://127.0.0.1:8003"
    stuck_after_s: float = Field(default=30.0, gt=0, description="a saga this still is stuck")
    sample_interval_s: float = Field(default=2.0, gt=0, description="topic end offsets")
    rate_window_s: float = Field(default=10.0, gt=0, description="messages/s over this")
    timeline_margin_s: float = Field(
        default=600.0, ge=0, description="read topics from this long before an order was made"
    )
    timeline_max_scan: int = Field(
        default=20_000, gt=0, description="records read per partition for one timeline"
    )

    @property
    def kafka(self) -> KafkaClient:
        """The broker, and the operator's own principal on it (KAFKA_USERNAME)."""
        return KafkaClient.of(self)
