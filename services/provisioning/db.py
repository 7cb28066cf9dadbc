"""The provisioning database: each line's balance and every top-up applied to it."""

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Uuid

metadata = MetaData()

lines = Table(
    "lines",
    metadata,
    Column("iccid", String(20), primary_key=True),
    Column("data_remaining_mb", Integer, nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

topups = Table(
    "topups",
    metadata,
    # `{order_id}:topup`: a line is topped up at most once per order.
    Column("idempotency_key", String(80), primary_key=True),
    Column("order_id", Uuid, nullable=False, index=True),
    Column("iccid", String(20), nullable=False, index=True),
    Column("data_mb", Integer, nullable=False),
    Column("validity_days", Integer, nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)
