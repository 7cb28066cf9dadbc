"""The orders database: orders (the saga's state), their timeline, and rejected requests."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)

from shared.inbox import add_inbox_to
from shared.outbox import add_outbox_to

metadata = MetaData()
# Every service keeps an outbox (what it has to publish) and an inbox (what it has done).
add_outbox_to(metadata)
add_inbox_to(metadata)

orders = Table(
    "orders",
    metadata,
    Column("order_id", Uuid, primary_key=True),
    # The publisher's key: a second PlaceOrder with it is the same order.
    Column("request_id", String(200), nullable=False, unique=True),
    Column("iccid", String(20), nullable=False, index=True),
    Column("msisdn", String(16), nullable=False),
    Column("email", String(320), nullable=False),
    # What was sold, copied from the catalog so a catalog change never alters an order.
    Column("catalog_version", String(32), nullable=False),
    Column("package_id", String(64), nullable=False),
    Column("data_mb", Integer, nullable=True),
    Column("fair_use_mb", Integer, nullable=True),
    Column("bonus_mb", Integer, nullable=False),
    Column("validity_days", Integer, nullable=False),
    Column("promotion_code", String(64), nullable=True),
    Column("payment_method", String(16), nullable=False),
    # Money: integer minor units of `currency`.
    Column("currency", String(3), nullable=False),
    Column("price_minor", BigInteger, nullable=False),
    Column("discount_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("captured_minor", BigInteger, nullable=True),
    Column("state", String(32), nullable=False),
    # How often a saga with no progress was nudged (services/orders/deadlines.py).
    Column("nudges", Integer, nullable=False, server_default="0"),
    Column("payment_due_by", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The latest answer on orders.events.v1 (OrderPlaced, then the outcome), as sent: a
    # repeated request gets it again, with its event_id (a consumer drops it as a repeat).
    Column("answer", Text, nullable=True),
    Index("ix_orders_state_payment_due_by", "state", "payment_due_by"),
)

order_transitions = Table(
    "order_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", Uuid, ForeignKey("orders.order_id"), nullable=False, index=True),
    Column("from_state", String(32), nullable=True),
    Column("to_state", String(32), nullable=False),
    Column("cause", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

rejected_requests = Table(
    "rejected_requests",
    metadata,
    # A rejected request is remembered so that publishing it again gets the same answer.
    Column("request_id", String(200), primary_key=True),
    Column("order_id", Uuid, nullable=False),
    Column("iccid", String(64), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("message", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
