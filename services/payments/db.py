"""The payments database: one row per provider call, keyed by its idempotency key."""

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Uuid

metadata = MetaData()

payments = Table(
    "payments",
    metadata,
    # `{order_id}:charge`: a second ChargePayment for the order is the same payment.
    Column("idempotency_key", String(80), primary_key=True),
    Column("order_id", Uuid, nullable=False, index=True),
    Column("iccid", String(20), nullable=False),
    Column("amount_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
