"""The load: order requests as internal systems publish them (with aiokafka, keyed by the
line), a mix of every saga outcome, repeated requests, requests the business rules refuse,
and malformed messages that each carry a marker to find them again in a dead-letter topic."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared import topics
from shared.events import (
    ChargePayment,
    LineToppedUp,
    Message,
    Money,
    PaymentCaptured,
    TopUpLine,
    order_id_for,
)
from shared.kafka_access import KafkaClient
from tests.factories import order_request, random_iccid

# Every malformed message carries it, so the duplicate injector can leave them alone and
# the dead-letter check can find each one in the bytes a consumer gave up on.
MARKER_PREFIX: Final = "faults-bad-"

# The topics the services consume: where duplicates and malformed messages are injected.
CONSUMED_TOPICS: Final = (
    topics.ORDERS_COMMANDS,
    topics.PAYMENTS_COMMANDS,
    topics.PAYMENTS_EVENTS,
    topics.PROVISIONING_COMMANDS,
    topics.PROVISIONING_EVENTS,
)

SEND_PATIENCE_S = 120.0  # how long one publish may keep failing (the broker restarts once)


class Kind(StrEnum):
    CARD = "card"  # captured at once
    LOST_ANSWER = "lost_answer"  # tok_timeout: the provider's first answer is lost
    CONFIRMED_LATER = "confirmed_later"  # alipay / wechat pay / paypal: pending, then confirmed
    DECLINED = "declined"
    NEVER_CONFIRMED = "never_confirmed"  # tok_pending_forever: the order expires
    SUSPENDED_LINE = "suspended_line"  # the top-up fails for good: refund
    INVALID = "invalid"  # refused by the business rules: OrderRejected


# Shares of the load, per kind; what is left over goes to CARD.
SHARES: Final = {
    Kind.LOST_ANSWER: 0.06,
    Kind.CONFIRMED_LATER: 0.10,
    Kind.DECLINED: 0.08,
    Kind.NEVER_CONFIRMED: 0.05,
    Kind.SUSPENDED_LINE: 0.08,
    Kind.INVALID: 0.08,
}

# Where each kind may end, given what the simulated world can do. A card payment can
# still be refunded (its top-up may exhaust its retries; a late charge may meet an
# expired order), an asynchronous one can expire before it is confirmed, but a declined
# or never-confirmed payment is never charged, and a suspended line is never topped up.
# The provider is killed too: a payment it could not decide before PAYMENT_TIMEOUT_S
# (unreachable, then restarting) expires its order, whatever the kind; the money checks
# prove that nothing was kept for it.
ALLOWED_ENDINGS: Final = {
    Kind.CARD: frozenset({"COMPLETED", "REFUNDED", "EXPIRED"}),
    Kind.LOST_ANSWER: frozenset({"COMPLETED", "REFUNDED", "EXPIRED"}),
    Kind.CONFIRMED_LATER: frozenset({"COMPLETED", "REFUNDED", "EXPIRED"}),
    Kind.DECLINED: frozenset({"PAYMENT_FAILED", "EXPIRED"}),
    Kind.NEVER_CONFIRMED: frozenset({"EXPIRED"}),
    Kind.SUSPENDED_LINE: frozenset({"REFUNDED", "EXPIRED"}),
}

REPEATED_SHARE = 0.10  # of the requests, published again (same bytes) a moment later

# Overrides that make a request break one business rule, and the reason expected back.
INVALID_REQUESTS: Final[tuple[tuple[dict[str, Any], str], ...]] = (
    ({"package_id": "moon-1tb"}, "unknown_package"),
    ({"iccid": "8944500102198304827"}, "invalid_iccid"),
    ({"email": "traveller@"}, "invalid_email"),
    ({"currency": "JPY"}, "unsupported_currency"),
    ({"payment_method": "cash"}, "unsupported_payment_method"),
    ({"promotion_code": "NOPE"}, "invalid_promotion"),
)

METERED_OR_UNLIMITED: Final = ("eu-1gb-7d", "eu-5gb-30d", "global-10gb-30d", "eu-unlimited-30d")
SOLD_IN_CNY: Final = ("eu-1gb-7d", "eu-5gb-30d", "eu-unlimited-30d")


@dataclass(frozen=True)
class Request:
    kind: Kind
    body: dict[str, Any]
    rejection: str | None = None  # the reason expected, for an INVALID request

    @property
    def request_id(self) -> str:
        return str(self.body["request_id"])

    @property
    def order_id(self) -> uuid.UUID:
        return order_id_for(self.request_id)


class Flaw(StrEnum):
    NOT_JSON = "not_json"
    MISSING_FIELDS = "missing_fields"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"


@dataclass(frozen=True)
class Malformed:
    marker: str
    topic: str
    flaw: Flaw
    value: bytes


@dataclass(frozen=True)
class Publication:
    at: float  # seconds after the load starts
    topic: str
    key: bytes
    value: bytes


@dataclass
class LoadPlan:
    requests: list[Request]
    malformed: list[Malformed]
    publications: list[Publication]
    repeated_requests: int

    def kinds(self) -> Counter[str]:
        return Counter(r.kind.value for r in self.requests)


@dataclass
class LoadFigures:
    published: int = 0
    send_retries: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


def plan_load(
    orders: int, duration_s: float, suspended_iccids: list[str], rng: random.Random
) -> LoadPlan:
    """What to publish and when: `orders` distinct requests, some published twice, and a
    few malformed messages on every consumed topic, spread over `duration_s`."""
    requests = [_request(kind, suspended_iccids, rng) for kind in _kinds(orders, rng)]
    malformed = [
        _malformed(topic, flaw, rng)
        for topic, flaw in _every_topic_and_flaw(max(len(CONSUMED_TOPICS) * 3, orders // 50))
    ]
    publications: list[Publication] = []
    repeated = 0
    for request in requests:
        at = rng.uniform(0, duration_s)
        value = json.dumps(request.body).encode()
        key = str(request.body["iccid"]).encode()
        publications.append(Publication(at, topics.ORDERS_COMMANDS, key, value))
        if rng.random() < REPEATED_SHARE:
            # The publisher did not see its acknowledgement and sends the request again.
            later = min(at + rng.uniform(0.2, 5.0), duration_s)
            publications.append(Publication(later, topics.ORDERS_COMMANDS, key, value))
            repeated += 1
    for bad in malformed:
        key = random_iccid().encode()
        publications.append(Publication(rng.uniform(0, duration_s), bad.topic, key, bad.value))
    publications.sort(key=lambda p: p.at)
    return LoadPlan(requests, malformed, publications, repeated)


async def publish_load(kafka: KafkaClient, plan: LoadPlan) -> LoadFigures:
    """Publish every message at its time, each until the broker acknowledges it, as a
    publisher that must not lose a request would (a late one is sent as soon as it can)."""
    figures = LoadFigures()
    producer = AIOKafkaProducer(
        **kafka.options(),
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=10_000,
    )
    await producer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        for publication in plan.publications:
            await asyncio.sleep(max(0.0, started + publication.at - loop.time()))
            await _send_until_acknowledged(producer, publication, figures)
    finally:
        await producer.stop()
        figures.seconds = loop.time() - started
    return figures


async def _send_until_acknowledged(
    producer: AIOKafkaProducer, publication: Publication, figures: LoadFigures
) -> None:
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + SEND_PATIENCE_S
    while True:
        try:
            await producer.send_and_wait(publication.topic, publication.value, key=publication.key)
        except (KafkaError, TimeoutError) as error:
            if loop.time() > give_up_at:
                figures.failures.append(f"{publication.topic}: gave up sending: {error!r}")
                return
            figures.send_retries += 1
            await asyncio.sleep(0.5)
        else:
            figures.published += 1
            return


def _kinds(orders: int, rng: random.Random) -> list[Kind]:
    # At least one of every kind, so a small run still covers every outcome.
    counts = {kind: max(1, round(share * orders)) for kind, share in SHARES.items()}
    counts[Kind.CARD] = max(1, orders - sum(counts.values()))
    kinds = [kind for kind, count in counts.items() for _ in range(count)]
    rng.shuffle(kinds)
    return kinds


def _request(kind: Kind, suspended_iccids: list[str], rng: random.Random) -> Request:
    card_like = {
        "payment_method": "card",
        "currency": rng.choice(("EUR", "USD", "GBP")),
        "package_id": rng.choice(METERED_OR_UNLIMITED),
    }
    # The customer confirms later: in a wallet's app (CNY) or on PayPal's page.
    asynchronous = rng.choice(
        (
            {
                "payment_method": rng.choice(("alipay", "wechat_pay")),
                "currency": "CNY",
                "package_id": rng.choice(SOLD_IN_CNY),
            },
            {**card_like, "payment_method": "paypal"},
        )
    )
    match kind:
        case Kind.CARD:
            return Request(kind, order_request(**card_like))
        case Kind.LOST_ANSWER:
            return Request(kind, order_request(**card_like, payment_token="tok_timeout_1"))
        case Kind.CONFIRMED_LATER:
            return Request(kind, order_request(**asynchronous))
        case Kind.DECLINED:
            token = rng.choice(("tok_decline_insufficient", "tok_expired_card"))
            return Request(kind, order_request(**card_like, payment_token=token))
        case Kind.NEVER_CONFIRMED:
            return Request(kind, order_request(**asynchronous, payment_token="tok_pending_forever"))
        case Kind.SUSPENDED_LINE:
            # Half of them also lose the refund's first answer.
            token = rng.choice(("tok_visa_4242", "tok_refund_timeout"))
            iccid = rng.choice(suspended_iccids)
            return Request(kind, order_request(**card_like, iccid=iccid, payment_token=token))
        case Kind.INVALID:
            overrides, reason = rng.choice(INVALID_REQUESTS)
            return Request(kind, order_request(**{**card_like, **overrides}), reason)


def _every_topic_and_flaw(count: int) -> list[tuple[str, Flaw]]:
    combinations = [(topic, flaw) for topic in CONSUMED_TOPICS for flaw in Flaw]
    return [combinations[i % len(combinations)] for i in range(count)]


def _malformed(topic: str, flaw: Flaw, rng: random.Random) -> Malformed:
    # Never a run of 13 digits or more: a card number's shape, masked in a dead letter.
    drawn = uuid.UUID(int=rng.getrandbits(128)).hex
    marker = f"{MARKER_PREFIX}{drawn[:8]}g{drawn[8:16]}"
    match flaw:
        case Flaw.NOT_JSON:
            value = b"\xff\xfe<not json> " + marker.encode()
        case Flaw.MISSING_FIELDS:
            # A type and a line, but no ids and none of the message's own fields.
            message_type = topics.MESSAGES_ON[topic][0]
            value = json.dumps(
                {"type": message_type, "iccid": random_iccid(), "marker": marker}
            ).encode()
        case Flaw.UNKNOWN_SCHEMA_VERSION:
            # A message complete in every field, but of a version no consumer reads.
            body = {**_well_formed(topic, marker), "schema_version": 99, "marker": marker}
            value = json.dumps(body).encode()
    return Malformed(marker, topic, flaw, value)


def _well_formed(topic: str, marker: str) -> dict[str, Any]:
    """A message as valid as any on `topic`, about an order nobody placed."""
    if topic == topics.ORDERS_COMMANDS:
        return order_request(request_id=marker)
    order_id, iccid = uuid.uuid4(), random_iccid()
    money = Money(amount_minor=500, currency="EUR")
    no_fee = Money(amount_minor=0, currency="EUR")
    message: Message
    if topic == topics.PAYMENTS_COMMANDS:
        message = ChargePayment(
            order_id=order_id,
            iccid=iccid,
            amount=money,
            fee=no_fee,
            payment_method="card",
            payment_token="tok_visa_4242",
            idempotency_key=f"{order_id}:charge",
        )
    elif topic == topics.PAYMENTS_EVENTS:
        message = PaymentCaptured(
            order_id=order_id, iccid=iccid, amount=money, fee=no_fee, provider_reference=marker
        )
    elif topic == topics.PROVISIONING_COMMANDS:
        message = TopUpLine(
            order_id=order_id,
            iccid=iccid,
            package_id="eu-1gb-7d",
            data_mb=1024,
            validity_days=7,
            idempotency_key=f"{order_id}:topup",
        )
    else:
        message = LineToppedUp(
            order_id=order_id,
            iccid=iccid,
            data_mb=1024,
            valid_until=datetime(2030, 1, 1, tzinfo=UTC),
            data_remaining_mb=1024,
        )
    return message.model_dump(mode="json")
