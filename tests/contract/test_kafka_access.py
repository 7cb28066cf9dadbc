"""Who may write and read each topic (shared/kafka_access.py) follows the contract's
senders and receivers (shared/asyncapi.py), and docs/contract.md shows it."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from shared import asyncapi, topics
from shared.kafka_access import (
    BY_NAME,
    OPERATOR,
    PRINCIPALS,
    PUBLISHER,
    VIEWER,
    KafkaClient,
    with_table,
)
from shared.kafka_grants import READ, WRITE, acls_of, all_acls
from shared.settings import REPO_ROOT, ServiceSettings

# The contract's names for the parties outside this repository, as principals.
PRINCIPAL_OF = {asyncapi.INTERNAL_SYSTEMS: PUBLISHER, asyncapi.CARRIER: "carrier"}


def principals(parties: object) -> set[str]:
    return {PRINCIPAL_OF.get(str(party), str(party)) for party in parties}  # type: ignore[attr-defined]


@pytest.mark.parametrize("topic", topics.MESSAGE_TOPICS)
def test_the_principals_that_write_a_topic_are_its_senders(topic: str) -> None:
    writers = {p.name for p in PRINCIPALS if topic in p.writes}
    assert writers == principals(asyncapi.senders_of(topic))


@pytest.mark.parametrize("topic", topics.MESSAGE_TOPICS)
def test_the_principals_that_read_a_topic_are_its_receivers_and_the_onlookers(topic: str) -> None:
    consumers = {service for service, _group, _ack in asyncapi.subscriptions().get(topic, [])}
    outside = principals(asyncapi.EXTERNAL_RECEIVERS.get(topic, {}))
    readers = {p.name for p in PRINCIPALS if topic in p.reads}
    assert readers == consumers | outside | {OPERATOR, VIEWER}


@pytest.mark.parametrize("topic", topics.MESSAGE_TOPICS)
def test_a_dead_letter_topic_is_written_by_the_consumers_of_its_source_alone(topic: str) -> None:
    consumers = {service for service, _group, _ack in asyncapi.subscriptions().get(topic, [])}
    writers = {p.name for p in PRINCIPALS if topics.dead_letter_topic(topic) in p.may_write}
    assert writers == consumers


def test_every_consumer_group_is_one_its_service_may_join() -> None:
    for topic, subscribers in asyncapi.subscriptions().items():
        for service, group, _ack in subscribers:
            assert group.startswith(BY_NAME[service].group_prefix), (topic, group)


def test_only_payments_may_write_payment_events_and_only_provisioning_top_up_events() -> None:
    """The two events that complete an order, besides the operator's audited replays."""
    for topic, owner in ((topics.PAYMENTS_EVENTS, "payments"), (topics.PROVISIONING_EVENTS,
                                                                 "provisioning")):  # fmt: skip
        writes = {
            a.principal for a in all_acls() if a.resource_name == topic and a.operation == WRITE
        }
        assert writes == {owner, OPERATOR}


def test_a_publisher_writes_orders_commands_and_reads_the_answers_and_line_events() -> None:
    acls = acls_of(BY_NAME[PUBLISHER])
    assert {a.resource_name for a in acls if a.operation == WRITE} == {topics.ORDERS_COMMANDS}
    assert {a.resource_name for a in acls if a.operation == READ} == {
        topics.ORDERS_EVENTS,
        topics.PROVISIONING_LINE_EVENTS,
    }


def test_the_contract_page_shows_the_table() -> None:
    page = (REPO_ROOT / "docs" / "contract.md").read_text()
    assert with_table(page) == page, "run: python -m shared.kafka_access"


def test_a_password_is_never_shown() -> None:
    client = KafkaClient("kafka:9092", "orders", SecretStr("hunter2-secret"))
    settings = ServiceSettings(
        service_name="orders", kafka_username="orders", kafka_password="hunter2-secret"
    )
    shown = [str(client), repr(client), repr(settings), str(settings.model_dump())]
    assert not any("hunter2" in text for text in shown)
    assert client.options()["sasl_plain_password"] == "hunter2-secret"
    assert KafkaClient.of(settings).options()["sasl_plain_username"] == "orders"


def test_without_a_username_a_client_speaks_plaintext() -> None:
    assert KafkaClient("kafka:9092").options() == {"bootstrap_servers": "kafka:9092"}
