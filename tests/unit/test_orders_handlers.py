import uuid
from pathlib import Path

from sqlalchemy import func, select

from services.orders import handlers
from services.orders.db import metadata, orders
from shared import topics
from shared.events import Money, PaymentCaptured, PlaceOrder, order_id_for
from tests.unit.harness import in_memory_service, running

ICCID = "8944500102198304826"


def place(request_id: str, package_id: str = "eu-5gb-30d") -> PlaceOrder:
    return PlaceOrder(
        order_id=order_id_for(request_id), iccid=ICCID, request_id=request_id,
        package_id=package_id,
    )  # fmt: skip


async def test_placing_an_order_asks_payments_to_charge_the_package_price(tmp_path: Path) -> None:
    async with in_memory_service("orders", handlers.router, metadata, tmp_path) as service:
        charges = service.watch(topics.PAYMENTS_COMMANDS)
        async with running(service.broker):
            command = place(f"req-{uuid.uuid4()}")
            await service.send(topics.ORDERS_COMMANDS, command)
    assert len(charges) == 1
    assert charges[0]["type"] == "ChargePayment"
    assert charges[0]["amount"] == {"amount_minor": 1500, "currency": "EUR"}
    assert charges[0]["idempotency_key"] == f"{command.order_id}:charge"


async def test_a_duplicate_request_makes_one_order_and_one_charge(tmp_path: Path) -> None:
    async with in_memory_service("orders", handlers.router, metadata, tmp_path) as service:
        charges = service.watch(topics.PAYMENTS_COMMANDS)
        async with running(service.broker):
            command = place(f"req-{uuid.uuid4()}")
            await service.send(topics.ORDERS_COMMANDS, command)
            await service.send(topics.ORDERS_COMMANDS, command.model_copy(
                update={"event_id": uuid.uuid4()}
            ))  # fmt: skip
        async with service.sessions() as session:
            count = await session.scalar(select(func.count()).select_from(orders))
    assert count == 1
    assert len(charges) == 1


async def test_a_captured_payment_asks_provisioning_to_top_up_the_line(tmp_path: Path) -> None:
    async with in_memory_service("orders", handlers.router, metadata, tmp_path) as service:
        topups = service.watch(topics.PROVISIONING_COMMANDS)
        async with running(service.broker):
            command = place(f"req-{uuid.uuid4()}")
            await service.send(topics.ORDERS_COMMANDS, command)
            captured = PaymentCaptured(
                order_id=command.order_id, iccid=ICCID,
                amount=Money(amount_minor=1500, currency="EUR"),
            )  # fmt: skip
            await service.send(topics.PAYMENTS_EVENTS, captured)
            await service.send(topics.PAYMENTS_EVENTS, captured)
    assert [t["idempotency_key"] for t in topups] == [f"{command.order_id}:topup"]
    assert topups[0]["data_mb"] == 5120
