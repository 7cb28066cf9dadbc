"""The two commands tried where users clone and however the last run ended.

`make test` runs the case marked `in_make_test`; `make test-anywhere` (ANYWHERE=all) the
whole matrix.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.anywhere.clones import Clone, make_clone

MakeClone = Callable[..., Clone]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("ANYWHERE") == "all":
        return
    here = Path(__file__).parent
    left_out = [
        item
        for item in items
        if item.path.is_relative_to(here) and item.get_closest_marker("in_make_test") is None
    ]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]


@pytest.fixture
def clones() -> Iterator[MakeClone]:
    """clones('some/path', mode=0o700): a clone at some/path under a new folder of that mode
    (in /tmp, as a user's home would be); all of them stopped and removed afterwards."""
    made: list[Clone] = []
    bases: list[Path] = []

    def clone_at(relative: str, *, mode: int) -> Clone:
        base = Path(tempfile.mkdtemp(prefix="anywhere-"))
        base.chmod(mode)
        bases.append(base)
        clone = make_clone(base / relative)
        made.append(clone)
        return clone

    yield clone_at
    for clone in made:
        clone.cleanup()
    for base in bases:
        shutil.rmtree(base, ignore_errors=True)
