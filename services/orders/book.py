"""The orders one transaction works on: loaded and locked together, changed in memory,
written back together (a unit of work).

A consumer's batch (shared/batches.py) loads every order its messages are about in one
statement (`prepare`), each message changes the book in Python, in order, and the batch
writes it back at the end (`finish`): one INSERT of the new orders, one UPDATE (one
statement, many rows) of the changed ones, one INSERT of the timeline and one of the
rejected requests, whatever the batch's size. A message handled alone, or a background
loop, does the same with a book of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.db import order_transitions, orders, rejected_requests
from shared.db import insert_ignoring_conflicts

BOOK: Final = "order_book"
# What a message may change in an order once it is placed: written back whole.
MUTABLE: Final = ("state", "captured_minor", "valid_until", "nudges", "updated_at", "answer")


class Row(dict[str, Any]):
    """An order (or a rejected request) as the book holds it: its columns, by attribute
    as SQLAlchemy's rows are read."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class OrderInsertLost(Exception):
    """Another transaction placed one of the batch's new orders first: this one rolls
    back and its messages are handled again (one at a time), answering from that order."""


@dataclass
class OrderBook:
    orders: dict[uuid.UUID, Row] = field(default_factory=dict)
    rejected: dict[str, Row] = field(default_factory=dict)  # by request_id
    asked: set[uuid.UUID] = field(default_factory=set)  # looked up, found or not
    new: list[uuid.UUID] = field(default_factory=list)
    changed: set[uuid.UUID] = field(default_factory=set)
    new_rejections: list[Row] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    deferred: bool = False  # a batch's book: written back once, by `finish`

    @staticmethod
    def of(session: AsyncSession) -> OrderBook:
        """The book of `session`'s transaction."""
        book = session.info.get(BOOK)
        if book is None:
            book = session.info[BOOK] = OrderBook()
        assert isinstance(book, OrderBook)
        return book

    async def load(
        self, session: AsyncSession, order_ids: Iterable[uuid.UUID], *, with_requests: bool = False
    ) -> OrderBook:
        """The orders not looked up yet, locked (two transactions never move one order);
        with their rejected requests too when `with_requests` (an order's id is made
        from its request's id)."""
        wanted = [i for i in dict.fromkeys(order_ids) if i not in self.asked]
        if not wanted:
            return self
        self.asked.update(wanted)
        found = await session.execute(
            select(orders).where(orders.c.order_id.in_(wanted)).with_for_update()
        )
        for row in found.mappings():
            self.orders[row["order_id"]] = Row(row)
        if with_requests:
            refused = await session.execute(
                select(rejected_requests).where(rejected_requests.c.order_id.in_(wanted))
            )
            for row in refused.mappings():
                self.rejected[row["request_id"]] = Row(row)
        return self

    def adopt(self, found: Iterable[Mapping[Any, Any]]) -> list[Row]:
        """Orders the caller loaded and locked itself (a background loop's), in the book."""
        rows = []
        for values in found:
            row = self.orders.setdefault(values["order_id"], Row(values))
            self.asked.add(row.order_id)
            rows.append(row)
        return rows

    def add(self, row: Row) -> None:
        self.orders[row.order_id] = row
        self.asked.add(row.order_id)
        self.new.append(row.order_id)

    def change(self, row: Row, **values: Any) -> None:
        row.update(values)
        if row.order_id not in self.new:
            self.changed.add(row.order_id)

    def reject(self, row: Row) -> None:
        self.rejected[row.request_id] = row
        self.new_rejections.append(row)

    def record(self, transitions: Iterable[dict[str, Any]]) -> None:
        self.timeline.extend(transitions)

    async def flush(self, session: AsyncSession, *, deferred_too: bool = False) -> None:
        """Write back what changed, a statement per table; nothing while a batch defers it
        (`deferred_too`: the batch's end)."""
        if self.deferred and not deferred_too:
            return
        if self.new:
            placed = (
                insert_ignoring_conflicts(session, orders)
                .values([dict(self.orders[i]) for i in self.new])
                .returning(orders.c.order_id)
            )
            if len((await session.execute(placed)).all()) < len(self.new):
                raise OrderInsertLost("an order of this transaction was placed by another")
        if self.changed:
            await session.execute(_WRITE_BACK, [_written(self.orders[i]) for i in self.changed])
        if self.new_rejections:
            refused = insert_ignoring_conflicts(session, rejected_requests)
            await session.execute(refused.values([dict(r) for r in self.new_rejections]))
        if self.timeline:
            await session.execute(insert(order_transitions), self.timeline)
        self.new, self.changed, self.new_rejections, self.timeline = [], set(), [], []


_WRITE_BACK: Final = (
    update(orders)
    .where(orders.c.order_id == bindparam("b_order_id"))
    .values({name: bindparam(f"b_{name}") for name in MUTABLE})
)


def _written(row: Row) -> dict[str, Any]:
    return {"b_order_id": row.order_id, **{f"b_{name}": row[name] for name in MUTABLE}}
