"""The audit record: who did what to what, and how it went. Operators' actions are
appended by the operator service (services/operator/audit.py); a service's own
state-changing API calls (a line's auto-renewal set or stopped) are staged in its outbox
in the same transaction as the change, so there is no change without its record.

One JSON record per action on `operator.audit.v1` (one partition: in the order written;
kept forever) and one log line. Targets and details are masked before they are written:
the audit log is read by people (shared/logs.py says what masked means).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from shared import outbox, topics
from shared.kafka_access import KafkaClient
from shared.logs import mask_fields
from shared.settings import ServiceSettings
from shared.topic_layout import TopicLayout, ensure_topics

AUDIT_TOPIC: Final = topics.OPERATOR_AUDIT

log = logging.getLogger("audit")


@dataclass(frozen=True)
class AuditEntry:
    at: str
    operator: str  # who: an operator, or the caller (API_TOKENS) of a service's API
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]

    @classmethod
    def now(
        cls, operator: str, action: str, target: str, outcome: str, detail: dict[str, Any]
    ) -> AuditEntry:
        return cls(
            datetime.now(UTC).isoformat(),
            operator,
            action,
            mask_fields(target),
            outcome,
            mask_fields(detail),
        )

    @classmethod
    def parse(cls, value: bytes) -> AuditEntry | None:
        try:
            body = json.loads(value)
            return cls(**{name: body[name] for name in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None  # not written by us: shown nowhere

    def logged(self) -> None:
        record = asdict(self)
        log.info(
            "%s: %s %s -> %s",
            self.operator,
            self.action,
            self.target,
            self.outcome,
            extra={"audit": record},
        )


async def audited(
    session: AsyncSession, who: str, action: str, target: str, detail: dict[str, Any]
) -> None:
    """Record, with `session`'s transaction, that `who` did `action` to `target`."""
    entry = AuditEntry.now(who, action, target, "ok", detail)
    await outbox.stage_record(session, AUDIT_TOPIC, entry.operator, json.dumps(asdict(entry)))
    entry.logged()


async def ensure_audit_topic(
    kafka: KafkaClient | ServiceSettings, layout: TopicLayout | None = None
) -> None:
    """The audit topic as it must be (one partition, kept forever, replicated as
    `layout` says), created by whichever of its writers starts first: never by the
    broker's defaults on a first write."""
    audit = replace(layout or TopicLayout(), partitions=1, configs={"retention.ms": "-1"})
    await ensure_topics(kafka, (AUDIT_TOPIC,), audit)
