"""Where the throw-away clusters live when the postgres user cannot enter the clone: a
folder of the clone's own under a root-owned one, never a folder someone else could change."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local import postgres
from deploy.local.errors import StackError


def test_a_clones_shared_home_is_named_by_its_path_and_says_which_clone_it_serves() -> None:
    home = postgres.shared_home_of_this_clone()
    assert home.parent == postgres.SHARED_HOME
    assert home == postgres.shared_home_of_this_clone()  # the same clone, the same folder
    assert len(home.name) == 12


def test_a_shared_home_that_others_may_change_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = tmp_path / "topup-billing-pg"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)  # as someone else could have made it in /var/tmp
    monkeypatch.setattr(postgres, "SHARED_HOME", planted)
    with pytest.raises(StackError, match="set PG_HOME to a folder the postgres user can enter"):
        postgres._make_shared_home(planted / "0123456789ab")
    assert not (planted / "0123456789ab").exists()
