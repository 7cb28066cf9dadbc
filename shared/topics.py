"""Every topic name, in one place.

Convention: `<owner>.<kind>.v<major>`, where `owner` is the service that owns the
topic's schema, `kind` is `commands` (imperative messages addressed to the owner)
or `events` (past-tense facts the owner publishes; `line-events` for the ones about
lines rather than orders), and `major` changes only on a breaking contract change,
which then gets a new topic. One exception: `carrier.usage.v1` is written by the
carrier (locally its simulator, a process of its own), whose reports provisioning reads.
Every message is keyed by the line's ICCID, so everything about one line stays in one
partition, in order.
"""

from typing import Final

ORDERS_COMMANDS: Final = "orders.commands.v1"
ORDERS_EVENTS: Final = "orders.events.v1"
PAYMENTS_COMMANDS: Final = "payments.commands.v1"
PAYMENTS_EVENTS: Final = "payments.events.v1"
PROVISIONING_COMMANDS: Final = "provisioning.commands.v1"
PROVISIONING_EVENTS: Final = "provisioning.events.v1"
PROVISIONING_LINE_EVENTS: Final = "provisioning.line-events.v1"
CARRIER_USAGE: Final = "carrier.usage.v1"

SAGA_TOPICS: Final = (
    ORDERS_COMMANDS,
    ORDERS_EVENTS,
    PAYMENTS_COMMANDS,
    PAYMENTS_EVENTS,
    PROVISIONING_COMMANDS,
    PROVISIONING_EVENTS,
)
# Beside the saga: usage reported by the carrier and what provisioning makes of it.
LINE_TOPICS: Final = (PROVISIONING_LINE_EVENTS, CARRIER_USAGE)
MESSAGE_TOPICS: Final = SAGA_TOPICS + LINE_TOPICS


def dead_letter_topic(topic: str) -> str:
    """Where a consumer of `topic` puts what it cannot process (shared/dead_letters.py)."""
    return f"{topic}.dlt"


DEAD_LETTER_TOPICS: Final = tuple(dead_letter_topic(topic) for topic in MESSAGE_TOPICS)
ALL_TOPICS: Final = MESSAGE_TOPICS + DEAD_LETTER_TOPICS
# The operator's record of who did what (services/operator/audit.py).
OPERATOR_AUDIT: Final = "operator.audit.v1"


def _messages() -> dict[str, tuple[str, ...]]:
    """Which messages each topic carries (names of the models in shared/events.py)."""
    return {
        ORDERS_COMMANDS: ("PlaceOrder",),
        ORDERS_EVENTS: (
            "OrderPlaced",
            "OrderRejected",
            "OrderCompleted",
            "OrderPaymentFailed",
            "OrderExpired",
            "OrderRefunded",
            "OrderAwaitingPayment",
        ),
        PAYMENTS_COMMANDS: ("ChargePayment", "CancelPayment", "RefundPayment"),
        PAYMENTS_EVENTS: (
            "PaymentPending",
            "PaymentCaptured",
            "PaymentDeclined",
            "PaymentCancelled",
            "PaymentRefunded",
        ),
        PROVISIONING_COMMANDS: ("TopUpLine",),
        PROVISIONING_EVENTS: ("LineToppedUp", "TopUpFailed"),
        PROVISIONING_LINE_EVENTS: ("LineAlertRaised", "DataForfeited", "AutoRenewalPaused"),
        CARRIER_USAGE: ("UsageReported",),
    }


MESSAGES_ON: Final = _messages()
