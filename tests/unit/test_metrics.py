import httpx

from services.orders.app import build_app
from shared.settings import ServiceSettings


async def test_every_service_serves_its_business_metrics_for_prometheus(tmp_path: object) -> None:
    app = build_app(
        ServiceSettings(service_name="orders", database_url=f"sqlite+aiosqlite:///{tmp_path}/o.db")
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
        response = await client.get("/metrics/")
    assert response.status_code == 200
    for name in (
        "topup_orders_total",
        "topup_saga_duration_seconds",
        "topup_topups_total",
        "topup_refunds_total",
        "topup_dead_letters_total",
        "topup_outbox_backlog",
        "topup_reconciler_actions_total",
    ):
        assert f"# HELP {name}" in response.text
