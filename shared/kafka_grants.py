"""Puts shared/kafka_access.py on a broker: a SCRAM user per principal and its ACLs.

Run by the broker's super user (`admin`, SASL/PLAIN) through aiokafka's connection, in
one request for the users and one for the ACLs: idempotent (an existing ACL is kept, a
user's credential replaced by the same password), milliseconds on a local broker, so
every start applies it again instead of remembering what is there. aiokafka has no
AlterUserScramCredentials and sends one ACL per CreateAcls; both are Kafka's own
request schemas below.

    python -m shared.kafka_grants --bootstrap-servers kafka:9092   # compose's set-up step
      (ADMIN password in KAFKA_ADMIN_PASSWORD, each principal's in KAFKA_<NAME>_PASSWORD)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import secrets
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Array,
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    String,
    TaggedFields,
)
from pydantic import SecretStr

from shared.kafka_access import (
    ADMIN,
    ADMIN_MECHANISM,
    OPERATED_TOPICS,
    PRINCIPALS,
    KafkaClient,
    Principal,
)

log = logging.getLogger(__name__)

# Kafka's enums (org.apache.kafka.common.resource / acl).
TOPIC, GROUP, CLUSTER = 2, 3, 4
LITERAL, PREFIXED = 3, 4
READ, WRITE, CREATE, DESCRIBE, DESCRIBE_CONFIGS = 3, 4, 5, 8, 10
ALLOW = 3
SCRAM_SHA_512 = 2
SCRAM_ITERATIONS: Final = 4096  # Kafka's minimum for SCRAM-SHA-512


class Acl(NamedTuple):
    """One ACL: `User:<principal>` may do `operation` on the resource, from any host."""

    principal: str
    resource_type: int
    resource_name: str
    pattern: int
    operation: int


def acls_of(principal: Principal) -> list[Acl]:
    """What the table says `principal` may do, as Kafka ACLs (READ and WRITE imply DESCRIBE;
    WRITE implies the idempotent producer's right since Kafka 3.0)."""
    name = principal.name
    acls = [Acl(name, TOPIC, topic, LITERAL, WRITE) for topic in principal.may_write]
    acls += [Acl(name, TOPIC, topic, LITERAL, READ) for topic in principal.reads]
    if principal.service:
        acls.append(Acl(name, GROUP, principal.group_prefix, PREFIXED, READ))
    if principal.lays_out_topics:
        # DESCRIBE_CONFIGS: a topic's min.insync.replicas, checked at start (topic_layout.py).
        acls += [
            Acl(name, TOPIC, topic, LITERAL, operation)
            for topic in OPERATED_TOPICS
            for operation in (CREATE, DESCRIBE, DESCRIBE_CONFIGS)
        ]
    if principal.watches_groups:
        acls.append(Acl(name, GROUP, "*", LITERAL, DESCRIBE))
    return acls


def all_acls() -> list[Acl]:
    return [acl for principal in PRINCIPALS for acl in acls_of(principal)]


# --- the requests aiokafka lacks ---------------------------------------------------------


class _CreateAclsResponse(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 30
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", Array(("error_code", Int16), ("error_message", String("utf-8")))),
    )


class _CreateAclsStruct(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 30
    API_VERSION = 1
    RESPONSE_TYPE = _CreateAclsResponse
    SCHEMA = Schema(
        (
            "creations",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                ("pattern_type", Int8),
                ("principal", String("utf-8")),
                ("host", String("utf-8")),
                ("operation", Int8),
                ("permission_type", Int8),
            ),
        ),
    )


class CreateAcls(Request[_CreateAclsStruct]):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 30

    def __init__(self, acls: list[Acl]) -> None:
        self.acls = acls

    def build(self, request_struct_class: type[_CreateAclsStruct]) -> _CreateAclsStruct:
        return request_struct_class(
            [
                (
                    a.resource_type,
                    a.resource_name,
                    a.pattern,
                    f"User:{a.principal}",
                    "*",
                    a.operation,
                    ALLOW,
                )
                for a in self.acls
            ]
        )


class _AlterScramResponse(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 51
    API_VERSION = 0
    FLEXIBLE_VERSION = True
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramStruct(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 51
    API_VERSION = 0
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentials(Request[_AlterScramStruct]):  # type: ignore[misc]  # aiokafka is untyped
    """Upserts SCRAM-SHA-512 credentials: the client salts and hashes, the broker keeps
    the keys derived from that (RFC 5802), never the password."""

    API_KEY = 51

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self.passwords = passwords

    def build(self, request_struct_class: type[_AlterScramStruct]) -> _AlterScramStruct:
        upsertions: list[tuple[Any, ...]] = []
        for name, password in self.passwords.items():
            salt = secrets.token_bytes(32)
            salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
            upsertions.append((name, SCRAM_SHA_512, SCRAM_ITERATIONS, salt, salted, {}))
        return request_struct_class([], upsertions, {})


# --- applying it ------------------------------------------------------------------------


class GrantError(Exception):
    """The broker refused a user or an ACL."""


def admin_client(bootstrap_servers: str, admin_password: str) -> KafkaClient:
    return KafkaClient(bootstrap_servers, ADMIN, SecretStr(admin_password), ADMIN_MECHANISM)


class _PlainOnLoopback(logging.Filter):
    """aiokafka warns at every SASL/PLAIN sign-in without TLS; the admin's is on purpose
    (deploy/local/kafka.py secured_properties), and `make run` would print it each start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "in the clear" not in record.getMessage()


logging.getLogger("aiokafka.conn").addFilter(_PlainOnLoopback())


async def apply(
    bootstrap_servers: str,
    admin_password: str,
    passwords: Mapping[str, str],
    *,
    wait_s: float = 60.0,
) -> None:
    """Every principal of `passwords` a SCRAM user, and every ACL of the table; returns
    once the last user can sign in (the broker has taken all of it in)."""
    admin = AIOKafkaAdminClient(**admin_client(bootstrap_servers, admin_password).options())
    await _start(admin, bootstrap_servers, wait_s)
    try:
        created = await admin._send_request(CreateAcls(all_acls()))
        _raise_errors("ACL", [(str(i), e, m) for i, (e, m) in enumerate(created.results)])
        altered = await admin._send_request(AlterUserScramCredentials(passwords))
        _raise_errors("SCRAM user", [(u, e, m) for u, e, m, _tags in altered.results])
    finally:
        await admin.close()
    if passwords:
        name, password = list(passwords.items())[-1]
        await _wait_until_signed_in(KafkaClient(bootstrap_servers, name, SecretStr(password)))


async def _start(admin: AIOKafkaAdminClient, servers: str, wait_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            await admin.start()
            return
        except KafkaConnectionError:
            if loop.time() > deadline:
                raise
            log.info("broker %s not reachable yet; retrying", servers)
            await asyncio.sleep(0.2)


async def _wait_until_signed_in(client: KafkaClient, wait_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        probe = AIOKafkaAdminClient(**client.options())
        try:
            await probe.start()
            return
        except KafkaError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)
        finally:
            await probe.close()


def _raise_errors(what: str, results: list[tuple[str, int, str | None]]) -> None:
    failed = [
        f"{name}: {for_code(code).__name__} {message or ''}"
        for name, code, message in results
        if code
    ]
    if failed:
        raise GrantError(f"the broker refused {len(failed)} {what}(s): {'; '.join(failed[:5])}")


def apply_in_thread(
    bootstrap_servers: str, admin_password: str, passwords: Mapping[str, str], wait_s: float = 60.0
) -> None:
    """`apply` from synchronous code, also when an event loop runs in this thread (async
    tests start brokers): in a thread of its own, with a loop of its own."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(apply(bootstrap_servers, admin_password, passwords, wait_s=wait_s))
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name="kafka grants")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def new_passwords(names: Iterable[str] | None = None) -> dict[str, str]:
    """A fresh password for the admin and each principal (tests' brokers)."""
    wanted = [ADMIN, *(p.name for p in PRINCIPALS)] if names is None else list(names)
    return {name: secrets.token_urlsafe(24) for name in wanted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.kafka_grants",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args(argv)
    admin_password = os.environ.get("KAFKA_ADMIN_PASSWORD", "")
    passwords = {
        p.name: os.environ[f"KAFKA_{p.name.upper()}_PASSWORD"]
        for p in PRINCIPALS
        if os.environ.get(f"KAFKA_{p.name.upper()}_PASSWORD")
    }
    if not args.bootstrap_servers or not admin_password:
        parser.error(
            "needs --bootstrap-servers (or KAFKA_BOOTSTRAP_SERVERS) and KAFKA_ADMIN_PASSWORD"
        )
    logging.basicConfig(level=logging.INFO)
    asyncio.run(apply(args.bootstrap_servers, admin_password, passwords, wait_s=120.0))
    print(f"kafka grants: {len(all_acls())} ACLs, users {', '.join(passwords) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
