"""`make run DB=postgres` works from wherever a user clones: a folder only its owner can
enter (as /root is on Debian), a path with spaces and non-ASCII letters."""

from __future__ import annotations

import os

import pytest

from tests.anywhere.clones import FIRST_START_S
from tests.anywhere.conftest import MakeClone

pytestmark = pytest.mark.anywhere


@pytest.mark.in_make_test
@pytest.mark.timeout(FIRST_START_S + 180)
def test_make_run_on_postgres_works_in_a_clone_under_a_folder_only_its_owner_may_enter(
    clones: MakeClone,
) -> None:
    clone = clones("home/me/top-up billing", mode=0o700)
    run = clone.make_run_until_ready(DB="postgres")
    try:
        assert set(clone.healthy().values()) == {200}, run.output
        if os.geteuid() == 0:  # the server runs as `postgres`, who cannot enter the clone
            assert "the postgres user cannot enter" in run.output
            assert not (clone.root / "var/pg/run").exists()
            assert clone.postgres_homes(), "the cluster lives in a folder of the clone's own"
    finally:
        run.stop_with_ctrl_c()


@pytest.mark.timeout(FIRST_START_S + 180)
def test_make_run_on_postgres_works_in_a_path_with_spaces_and_non_ascii_letters(
    clones: MakeClone,
) -> None:
    clone = clones("Mes projets/Überweisung façade — 試験/top-up billing", mode=0o755)
    run = clone.make_run_until_ready(DB="postgres")
    try:
        assert set(clone.healthy().values()) == {200}, run.output
        assert (clone.root / "var/pg/run/pgdata/PG_VERSION").exists()  # in the clone
        # Kafka reads its settings in ISO-8859-1: its data went where they say, not beside.
        assert (clone.root / "var/kafka/run/logs/meta.properties").exists()
        assert [p.name for p in clone.root.parents[1].iterdir()] == [clone.root.parent.name]
        assert "cannot enter" not in run.output
    finally:
        run.stop_with_ctrl_c()
