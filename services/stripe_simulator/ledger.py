"""The simulator's ledger: Stripe's side of every payment, in its own database.

The fault suite reads these tables with SQL (tests/faults/state.py): keep the names.

- `payment_intents`: one row per PaymentIntent, `idempotency_key` unique, and
  `create_calls`, how many create requests came under that key (replays included).
- `refunds`: one row per Refund, with its `idempotency_key` and `payment_intent`.
- `idempotent_requests`: each POST's first answer, replayed for the same key.
- `webhook_deliveries`: each event, until the endpoint took it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

payment_intents = Table(
    "payment_intents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("idempotency_key", String(255), unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(32), nullable=False, index=True),
    Column("payment_method", String(255), nullable=False),  # masked when it holds a number
    Column("payment_method_type", String(32), nullable=False),
    Column("metadata", JSON, nullable=False),
    # What Search finds by `metadata['idempotency_key']`, kept apart from the JSON.
    Column("metadata_idempotency_key", String(255), index=True),
    Column("last_payment_error", JSON),
    Column("next_action", JSON),
    Column("cancellation_reason", String(64)),
    # When a pending intent confirms; NULL while it never will.
    Column("confirm_at", DateTime(timezone=True), index=True),
    Column("create_calls", Integer, nullable=False),
    Column("amount_refunded", BigInteger, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("idempotency_key", String(255), unique=True),
    Column("payment_intent", String(40), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(32), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

idempotent_requests = Table(
    "idempotent_requests",
    metadata,
    Column("idempotency_key", String(255), primary_key=True),
    Column("request", String(64), nullable=False),  # method, path and parameters' digest
    Column("status_code", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("event_id", String(40), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), index=True),  # NULL once delivered
    Column("delivered_at", DateTime(timezone=True)),
    Column("created", DateTime(timezone=True), nullable=False),
)
