"""The JSON schemas of every message, key and header, per topic, against their snapshots
in tests/contract/snapshots/: a change to the contract must be additive
(docs/contract.md), and `make contract` records it only when it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared import asyncapi
from shared.schema_compatibility import breaking


def test_no_message_key_or_header_changed_in_a_breaking_way_since_its_snapshot() -> None:
    changes = asyncapi.changes_since(asyncapi.read_snapshots(), asyncapi.snapshots())
    found = "\n".join(str(change) for change in breaking(changes))
    assert not found, (
        f"These changes break readers of the contract:\n{found}\n"
        "Make them additive, or publish a new schema_version / a new .v2 topic "
        "(docs/contract.md)."
    )


def test_the_snapshots_record_what_the_code_says_now() -> None:
    stored, current = asyncapi.read_snapshots(), asyncapi.snapshots()
    changes = "\n".join(str(change) for change in asyncapi.changes_since(stored, current))
    assert stored == json.loads(json.dumps(current)), (
        f"The snapshots are behind the code:\n{changes or '(documentation only)'}\n"
        "Run `make contract` and commit tests/contract/snapshots/."
    )


@pytest.fixture
def snapshot_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current snapshots, copied where update_snapshots may write."""
    monkeypatch.setattr(asyncapi, "SNAPSHOTS", tmp_path)
    monkeypatch.setattr(asyncapi, "DOCUMENT", tmp_path / "asyncapi.yaml")
    for topic, snapshot in asyncapi.snapshots().items():
        (tmp_path / f"{topic}.json").write_text(asyncapi.snapshot_text(snapshot))
    return tmp_path


def edit(directory: Path, topic: str, change: Any) -> str:
    path = directory / f"{topic}.json"
    snapshot = json.loads(path.read_text())
    change(snapshot)
    path.write_text(json.dumps(snapshot))
    return path.read_text()


def as_if_the_code_had_dropped_a_field(snapshot: dict[str, Any]) -> None:
    """A stored field the code no longer has: the code removed it."""
    captured = snapshot["messages"]["PaymentCaptured"]
    captured["properties"]["card_brand"] = {"type": "string"}


def as_if_the_code_had_added_an_optional_field(snapshot: dict[str, Any]) -> None:
    """A field the code has and the snapshot lacks: the code added it."""
    del snapshot["messages"]["PaymentCaptured"]["properties"]["occurred_at"]


def test_a_breaking_change_is_refused_and_nothing_is_written(
    snapshot_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = edit(snapshot_dir, "payments.events.v1", as_if_the_code_had_dropped_a_field)
    assert asyncapi.main(["--update-snapshots"]) == 1
    output = capsys.readouterr()
    assert "BREAKING: removed field at payments.events.v1 PaymentCaptured.card_brand" in output.out
    assert "Refused" in output.err
    assert (snapshot_dir / "payments.events.v1.json").read_text() == before
    assert not (snapshot_dir / "asyncapi.yaml").exists()


def test_a_breaking_change_is_recorded_when_explicitly_allowed(snapshot_dir: Path) -> None:
    edit(snapshot_dir, "payments.events.v1", as_if_the_code_had_dropped_a_field)
    assert asyncapi.main(["--update-snapshots", "--allow-breaking"]) == 0
    assert asyncapi.read_snapshots(snapshot_dir) == json.loads(json.dumps(asyncapi.snapshots()))


def test_an_additive_change_is_recorded_with_the_document(
    snapshot_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(snapshot_dir, "payments.events.v1", as_if_the_code_had_added_an_optional_field)
    assert asyncapi.main(["--update-snapshots"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "additive: new optional field at payments.events.v1 PaymentCaptured.occurred_at"
    )
    assert asyncapi.read_snapshots(snapshot_dir) == json.loads(json.dumps(asyncapi.snapshots()))
    assert (snapshot_dir / "asyncapi.yaml").read_text() == asyncapi.render(
        asyncapi.build_document()
    )


def test_a_removed_topic_is_breaking_and_a_new_one_additive(snapshot_dir: Path) -> None:
    stored = asyncapi.read_snapshots(snapshot_dir)
    current = dict(stored)
    retired = current.pop("orders.events.v1")
    current["orders.events.v2"] = {**retired, "topic": "orders.events.v2"}
    assert [str(change) for change in asyncapi.changes_since(stored, current)] == [
        "BREAKING: removed topic at orders.events.v1",
        "additive: new topic at orders.events.v2",
    ]
