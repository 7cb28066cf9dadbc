"""Dead letters as operators see them: the newest first, each with who replayed it
(from the audit log), and replaying some or all of them, audited."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Final, Literal

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.operator import dead_letter_store as store
from services.operator.audit import AuditEntry, AuditLog
from services.operator.dead_letter_store import DeadLetter
from shared.http_errors import shown
from shared.logs import mask
from shared.topics import ALL_TOPICS

REPLAY_ACTION: Final = "dead_letters.replay"
MAX_IDS: Final = 1000  # ids in one replay request (one read of their partitions)
PREVIEW_CHARS: Final = 200
ERROR_CHARS: Final = 1000

REPLAYS = Counter(
    "topup_operator_replays_total", "Dead letters replayed by operators", ["source_topic"]
)


# A dead-letter topic of the contract, or the topic it is named after.
TopicName = Literal[ALL_TOPICS]  # type: ignore[valid-type]


class NotFound(LookupError):
    """Some of the dead letters asked for are not there."""


class ReplayRequest(BaseModel):
    """Either `ids` or `all` (optionally narrowed to one topic and one reason)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, min_length=1, max_length=MAX_IDS
    )
    all: bool = False
    topic: TopicName | None = None
    reason: str | None = Field(default=None, max_length=64, pattern=r"^[a-z_]+$")

    @model_validator(mode="after")
    def _one_way(self) -> ReplayRequest:
        if (self.ids is not None) == self.all:
            raise ValueError('give either "ids" or "all": true')
        if self.ids is not None and (self.topic or self.reason):
            raise ValueError('"topic" and "reason" go with "all"')
        for where in self.ids or ():
            store.parse_where(where)
        return self


def replayed(entries: list[AuditEntry]) -> dict[str, AuditEntry]:
    """Each dead letter's latest replay (entries newest first)."""
    latest: dict[str, AuditEntry] = {}
    for entry in entries:
        if entry.action == REPLAY_ACTION and entry.outcome == "ok":
            for where in entry.detail.get("ids", []):
                latest.setdefault(str(where), entry)
    return latest


def view(letter: DeadLetter, replay: AuditEntry | None) -> dict[str, Any]:
    headers = letter.headers
    text = letter.value.decode(errors="replace")
    try:
        body = json.loads(letter.value)
    except (ValueError, RecursionError):
        body = None
    order_id = headers.get("order_id") or (body.get("order_id") if isinstance(body, dict) else None)
    return {
        "id": letter.where,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "source_topic": letter.source,
        "reason": letter.reason,
        "error": mask(headers.get("dlq.error", "")[:ERROR_CHARS]),
        "consumer": headers.get("dlq.consumer"),
        "failed_at": letter.failed_at or None,
        "type": headers.get("type") or (body.get("type") if isinstance(body, dict) else None),
        "order_id": order_id,
        # Cut with room for a value cut in two (that is masked too), then masked: a
        # large dead letter costs no more than a small one.
        "payload_preview": mask(text[: PREVIEW_CHARS + 64])[:PREVIEW_CHARS],
        "truncated": letter.truncated,  # a prefix only: never replayed
        "replayed_by": replay.operator if replay else None,
        "replayed_at": replay.at if replay else None,
    }


def _newest_first(letter: DeadLetter) -> tuple[str, int, str, int]:
    return letter.failed_at, letter.timestamp_ms, letter.topic, letter.offset


async def newest(audit: AuditLog, limit: int) -> list[dict[str, Any]]:
    letters = await store.read_dead_letters(audit.kafka, newest=limit)
    letters = sorted(letters, key=_newest_first, reverse=True)[:limit]
    replays = replayed(await audit.latest())
    return [view(letter, replays.get(letter.where)) for letter in letters]


async def _chosen(audit: AuditLog, request: ReplayRequest) -> list[DeadLetter]:
    servers = audit.kafka
    if request.ids is not None:
        # One id per dead letter however it was spelt (`:1:0`, `:01:0`...).
        wheres = list(dict.fromkeys(store.parse_where(where) for where in request.ids))
        found = await store.read_dead_letters_at(servers, wheres)
        missing = [f"{t}:{p}:{o}" for t, p, o in wheres if (t, p, o) not in found]
        if missing:
            shown = ", ".join(missing[:10]) + (
                f" and {len(missing) - 10} more" * (len(missing) > 10)
            )
            raise NotFound(f"no dead letter {shown}")
        return [found[where] for where in wheres]
    try:
        letters = await store.read_dead_letters(servers, request.topic)
    except store.UnknownTopic as error:
        raise NotFound(str(error)) from None
    # `all` means those still waiting: one replayed before and refused again is a new
    # dead letter, at a new offset, and is picked up as such.
    done = replayed(await audit.latest())
    return sorted(
        (
            letter
            for letter in letters
            if letter.where not in done
            and (request.reason is None or letter.reason == request.reason)
        ),
        key=lambda letter: (letter.topic, letter.partition, letter.offset),
    )


def _target(request: ReplayRequest) -> str:
    if request.ids is not None:
        return request.ids[0] if len(request.ids) == 1 else f"{len(request.ids)} dead letters"
    narrowed = [f"{k}={v}" for k, v in (("topic", request.topic), ("reason", request.reason)) if v]
    return " ".join(["all", *narrowed])


async def replay(audit: AuditLog, operator: str, request: ReplayRequest) -> list[str]:
    """Replay what the request names; audited whatever the outcome. The ids replayed."""
    asked = request.model_dump(exclude_none=True, exclude_defaults=True)

    async def audited(outcome: str, **detail: Any) -> None:
        entry = AuditEntry.now(
            operator, REPLAY_ACTION, _target(request), outcome, {**detail, "request": asked}
        )
        await audit.append(entry)

    try:
        letters = await _chosen(audit, request)
        done = await store.replay(audit.kafka, letters)
    except NotFound as error:
        await audited("not_found", error=str(error))
        raise
    except (Exception, asyncio.CancelledError) as error:  # every refusal and failure audited
        await audited("failed", error=shown(f"{type(error).__name__}: {error}"))
        raise
    for letter in done:
        REPLAYS.labels(letter.source).inc()
    ids = [letter.where for letter in done]
    await audited("ok", ids=ids)
    return ids
