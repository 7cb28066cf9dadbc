"""Who may write and read each topic: one Kafka principal per party, and its grants.

The broker authenticates every client (SASL/SCRAM-SHA-512) and lets it do only what this
table grants (StandardAuthorizer, nothing allowed without an ACL): an internal system
that publishes orders cannot write `payments.events.v1`, so it cannot forge the
`PaymentCaptured` that would top its own order up for free. The table follows the
contract (`shared/asyncapi.py`: who sends, who receives; tests/contract checks that it
does), and docs/contract.md shows it (`python -m shared.kafka_access`).

How the table becomes ACLs and users on a broker: shared/kafka_grants.py. How a process
says who it is: `KafkaClient`, from KAFKA_USERNAME / KAFKA_PASSWORD (shared/settings.py).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr

from shared import topics
from shared.settings import ServiceSettings
from shared.topics import dead_letter_topic

ADMIN: Final = "admin"
"""The broker's super user: only the stack's and the tests' set-up (users, ACLs, topic
settings) act as it. It signs in with SASL/PLAIN, its password in the broker's own
configuration, so it exists before any SCRAM user does."""

SCRAM_MECHANISM: Final = "SCRAM-SHA-512"
ADMIN_MECHANISM: Final = "PLAIN"

# Consumer groups are named `<service>:<topic>` (shared/kafka.py saga_subscriber).
GROUP_SEPARATOR: Final = ":"


@dataclass(frozen=True)
class Principal:
    """A party that signs in to Kafka as `User:<name>`, and what it may do there."""

    name: str
    who: str  # for people: docs/contract.md
    writes: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    # A service of ours: consumes `reads` in groups `<name>:<topic>` and dead-letters what
    # it cannot process on `<topic>.dlt`.
    service: bool = False
    # Lays out every topic when it starts (shared/kafka.py ensure_topics), so it may
    # create and describe them all (describing shows partitions, not messages).
    lays_out_topics: bool = False
    # Sees every consumer group's offsets (the operator's lag panel).
    watches_groups: bool = False
    replays_to: tuple[str, ...] = field(default=())  # the operator: a dead letter's source

    @property
    def dead_letters(self) -> tuple[str, ...]:
        return tuple(dead_letter_topic(t) for t in self.reads if t in topics.MESSAGE_TOPICS)

    @property
    def may_write(self) -> tuple[str, ...]:
        dead = self.dead_letters if self.service else ()
        return tuple(dict.fromkeys((*self.writes, *dead, *self.replays_to)))

    @property
    def group_prefix(self) -> str:
        return f"{self.name}{GROUP_SEPARATOR}"


PUBLISHER: Final = "publisher"
CARRIER: Final = "carrier"
OPERATOR: Final = "operator"
VIEWER: Final = "viewer"

# Every topic the operator sees: the contract's and its own audit log.
OPERATED_TOPICS: Final = (*topics.ALL_TOPICS, topics.OPERATOR_AUDIT)

PRINCIPALS: Final[tuple[Principal, ...]] = (
    Principal(
        "orders",
        "the orders service",
        writes=(topics.ORDERS_EVENTS, topics.PAYMENTS_COMMANDS, topics.PROVISIONING_COMMANDS),
        reads=(topics.ORDERS_COMMANDS, topics.PAYMENTS_EVENTS, topics.PROVISIONING_EVENTS),
        service=True,
        lays_out_topics=True,
    ),
    Principal(
        "payments",
        "the payments service (what Stripe's webhooks changed, on the audit log)",
        writes=(topics.PAYMENTS_EVENTS, topics.OPERATOR_AUDIT),
        reads=(topics.PAYMENTS_COMMANDS,),
        service=True,
        lays_out_topics=True,
    ),
    Principal(
        "provisioning",
        "the provisioning service (auto-renewal orders on orders.commands.v1; who changed a "
        "line's auto-renewal on the audit log)",
        writes=(
            topics.PROVISIONING_EVENTS,
            topics.PROVISIONING_LINE_EVENTS,
            topics.ORDERS_COMMANDS,
            topics.OPERATOR_AUDIT,
        ),
        reads=(topics.PROVISIONING_COMMANDS, topics.CARRIER_USAGE, topics.ORDERS_EVENTS),
        service=True,
        lays_out_topics=True,
    ),
    Principal(
        PUBLISHER,
        "an internal system that places orders (storefront, app, customer care, `topup`)",
        writes=(topics.ORDERS_COMMANDS,),
        reads=(topics.ORDERS_EVENTS, topics.PROVISIONING_LINE_EVENTS),
    ),
    Principal(
        CARRIER,
        "the carrier's usage feed (locally the carrier simulator, a process of its own)",
        writes=(topics.CARRIER_USAGE,),
    ),
    Principal(
        OPERATOR,
        "the operator service: reads everything, replays a dead letter to its source",
        writes=(topics.OPERATOR_AUDIT,),
        reads=OPERATED_TOPICS,
        lays_out_topics=True,
        watches_groups=True,
        replays_to=topics.MESSAGE_TOPICS,
    ),
    Principal(
        VIEWER,
        "a read-only view of every topic and group (compose's Kafka UI)",
        reads=OPERATED_TOPICS,
        watches_groups=True,
    ),
)

BY_NAME: Final = {principal.name: principal for principal in PRINCIPALS}
NAMES: Final = tuple(BY_NAME)


def writers_of(topic: str) -> list[str]:
    """The principals that may write `topic` (the operator's replays included)."""
    return [p.name for p in PRINCIPALS if topic in p.may_write]


def _writers_shown(topic: str) -> list[str]:
    return [
        p.name if topic in p.writes or topic in p.dead_letters else f"{p.name} (replays)"
        for p in PRINCIPALS
        if topic in p.may_write
    ]


def readers_of(topic: str) -> list[str]:
    return [p.name for p in PRINCIPALS if topic in p.reads]


# --- a client's side ---------------------------------------------------------------------


NO_PASSWORD: Final = SecretStr("")


@dataclass(frozen=True)
class KafkaClient:
    """Where the broker is and who this process is there. `options()` are the keyword
    arguments of every aiokafka client; no username: plaintext, for a broker without ACLs."""

    bootstrap_servers: str
    username: str = ""
    password: SecretStr = NO_PASSWORD
    mechanism: str = SCRAM_MECHANISM
    security_protocol: str = "SASL_PLAINTEXT"

    @classmethod
    def of(cls, settings: ServiceSettings | KafkaClient) -> KafkaClient:
        """From a service's settings (KAFKA_BOOTSTRAP_SERVERS, KAFKA_USERNAME, ...); a
        client as it is."""
        if isinstance(settings, KafkaClient):
            return settings
        return cls(
            settings.kafka_bootstrap_servers,
            settings.kafka_username,
            settings.kafka_password,
            settings.kafka_sasl_mechanism,
            settings.kafka_security_protocol,
        )

    @property
    def authenticated(self) -> bool:
        return bool(self.username)

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.authenticated:
            options |= {
                "security_protocol": self.security_protocol,
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value(),
            }
        return options

    def __str__(self) -> str:  # for messages: never the password
        return f"{self.bootstrap_servers} as {self.username or 'nobody (plaintext)'}"


# --- credentials on disk (make run) --------------------------------------------------------

CREDENTIALS_DIR: Final = Path(__file__).resolve().parent.parent / "var" / "kafka-credentials"


def read_credentials(folder: Path) -> dict[str, str]:
    """principal -> password, from one file each in `folder` (missing files left out)."""
    found = {}
    for name in (ADMIN, *NAMES):
        path = folder / name
        if path.exists():
            found[name] = path.read_text().strip()
    return found


def stored_credentials(folder: Path = CREDENTIALS_DIR) -> dict[str, str]:
    """The admin's and every principal's password, each generated once into a file of
    `folder` that only its owner may read (`make run`: var/kafka-credentials/)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in (ADMIN, *NAMES):
        path = folder / name
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(24) + "\n")
    return read_credentials(folder)


def service_env(name: str, passwords: Mapping[str, str]) -> dict[str, str]:
    """The environment that makes a process sign in as principal `name` (the carrier's
    simulator as `carrier`: it publishes the usage reports itself)."""
    return {"KAFKA_USERNAME": name, "KAFKA_PASSWORD": passwords[name]}


def client_from_env(
    env: dict[str, str] | None = None, *, default_user: str = "", folder: Path | None = None
) -> KafkaClient:
    """A command line's client: KAFKA_BOOTSTRAP_SERVERS, KAFKA_USERNAME and KAFKA_PASSWORD,
    else `default_user` with its password from `folder` (what `make run` wrote), if there."""
    env = dict(os.environ) if env is None else env
    servers = env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    username = env.get("KAFKA_USERNAME", "")
    password = env.get("KAFKA_PASSWORD", "")
    if not username and default_user and folder is not None:
        stored = read_credentials(folder).get(default_user)
        if stored is not None:
            username, password = default_user, stored
    return KafkaClient(
        servers,
        username,
        SecretStr(password),
        env.get("KAFKA_SASL_MECHANISM", SCRAM_MECHANISM),
        env.get("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
    )


# --- the contract's table --------------------------------------------------------------------


def access_table() -> str:
    """The Markdown table of docs/contract.md: who may write and read each topic."""
    rows = [
        "| topic | may write | may read |",
        "| --- | --- | --- |",
    ]
    for topic in OPERATED_TOPICS:
        writers = ", ".join(_writers_shown(topic)) or "nobody"
        readers = ", ".join(readers_of(topic)) or "nobody"
        rows.append(f"| `{topic}` | {writers} | {readers} |")
    rows += ["", "| principal | who |", "| --- | --- |"]
    rows += [f"| `{p.name}` | {p.who} |" for p in PRINCIPALS]
    return "\n".join(rows) + "\n"


TABLE_START: Final = "<!-- access table: python -m shared.kafka_access -->\n"
TABLE_END: Final = "<!-- end of access table -->\n"


def with_table(document: str) -> str:
    """`document` with the text between the table's markers made anew."""
    head, found, rest = document.partition(TABLE_START)
    if not found:
        raise ValueError("no access table markers in the document")
    _old, _end, tail = rest.partition(TABLE_END)
    return f"{head}{TABLE_START}{access_table()}{TABLE_END}{tail}"


def main(argv: list[str]) -> int:
    """Writes the table into docs/contract.md (`--check`: says whether it is current);
    `--env`: the passwords of var/kafka-credentials/ (made if missing) as an env file for
    compose."""
    if "--env" in argv:
        for name, password in stored_credentials().items():
            print(f"KAFKA_{name.upper()}_PASSWORD={password}")
        return 0
    contract = Path(__file__).resolve().parent.parent / "docs" / "contract.md"
    text = contract.read_text()
    if "--check" in argv:
        if with_table(text) != text:
            print("docs/contract.md: the access table is stale; run python -m shared.kafka_access")
            return 1
        return 0
    contract.write_text(with_table(text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
