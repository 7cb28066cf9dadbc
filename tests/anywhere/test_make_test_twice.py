"""`make test` twice in a row in one clone: the first run leaves nothing that fails the
second (brokers, clusters, ports, folders). A slice of the suite that starts every kind of
infrastructure: a PostgreSQL cluster, a broker, the services' processes."""

from __future__ import annotations

import re

import pytest

from tests.anywhere.clones import FIRST_START_S
from tests.anywhere.conftest import MakeClone

pytestmark = [pytest.mark.anywhere, pytest.mark.timeout(3 * FIRST_START_S)]

SLICE = (
    "tests/integration/test_local_postgres.py",
    "tests/integration/test_orders_on_real_infra.py::test_orders_drives_a_paid_order_to_completion",
    "tests/e2e/test_saga_outcomes.py::test_a_paid_order_tops_the_line_up_and_completes",
)


def test_make_test_passes_twice_in_a_row_in_one_clone(clones: MakeClone) -> None:
    clone = clones("twice/top-up billing", mode=0o755)
    passed = []
    for attempt in ("first", "second"):
        result = clone.make("test", f"PYTEST_ARGS={' '.join(SLICE)}", timeout=FIRST_START_S)
        assert result.returncode == 0, f"{attempt} make test:\n{result.stdout[-6000:]}"
        summary = re.search(r"=+ (\d+) passed in ", result.stdout)  # and nothing else
        assert summary is not None, result.stdout[-3000:]
        passed.append(int(summary[1]))
    assert passed[0] == passed[1] >= len(SLICE)
    clone.wait_until_nothing_runs(within=30)
