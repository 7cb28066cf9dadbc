"""The orders database: one row per order and one per saga transition."""

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
)

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    Column("order_id", Uuid, primary_key=True),
    # The publisher's key: a second PlaceOrder with it is the same order.
    Column("request_id", String(200), nullable=False, unique=True),
    Column("iccid", String(20), nullable=False, index=True),
    Column("package_id", String(64), nullable=False),
    Column("price_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("state", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

order_transitions = Table(
    "order_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", Uuid, ForeignKey("orders.order_id"), nullable=False, index=True),
    Column("from_state", String(32), nullable=True),
    Column("to_state", String(32), nullable=False),
    Column("cause", String(200), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
