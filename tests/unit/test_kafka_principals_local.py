"""The local broker's security and `make run`'s passwords, read without starting anything."""

from __future__ import annotations

import stat
from pathlib import Path

from deploy.local.kafka import LocalKafka
from shared.kafka_access import ADMIN, NAMES, service_env, stored_credentials
from shared.kafka_grants import new_passwords


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_no_listener_of_the_secured_broker_lets_anyone_in_without_a_password(
    tmp_path: Path,
) -> None:
    properties = LocalKafka(tmp_path, passwords=new_passwords()).server_properties()

    protocols = dict(p.split(":") for p in properties["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["super.users"] == f"User:{ADMIN}"
    assert properties["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"


def test_the_broker_configuration_holding_the_admins_password_is_its_owners_alone(
    tmp_path: Path,
) -> None:
    passwords = new_passwords()
    kafka = LocalKafka(tmp_path, passwords=passwords)
    kafka._write_config()

    assert passwords[ADMIN] in kafka.properties_path.read_text()
    assert mode(kafka.properties_path) == 0o600


def test_without_passwords_the_broker_is_the_open_plaintext_one_of_old(tmp_path: Path) -> None:
    properties = LocalKafka(tmp_path).server_properties()
    assert "authorizer.class.name" not in properties
    assert properties["listener.security.protocol.map"].startswith("PLAINTEXT:PLAINTEXT")


def test_make_run_generates_each_password_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "kafka-credentials"
    first = stored_credentials(folder)
    again = stored_credentials(folder)

    assert first == again
    assert set(first) == {ADMIN, *NAMES}
    assert len(set(first.values())) == len(first)
    assert mode(folder) == 0o700
    assert all(mode(folder / name) == 0o600 for name in first)


def test_each_process_signs_in_as_its_own_principal_and_no_other() -> None:
    passwords = new_passwords()
    assert service_env("orders", passwords) == {
        "KAFKA_USERNAME": "orders",
        "KAFKA_PASSWORD": passwords["orders"],
    }
    # The carrier's simulator publishes usage as the carrier; provisioning knows only its own.
    assert service_env("carrier", passwords)["KAFKA_PASSWORD"] == passwords["carrier"]
    assert set(service_env("provisioning", passwords)) == {"KAFKA_USERNAME", "KAFKA_PASSWORD"}
