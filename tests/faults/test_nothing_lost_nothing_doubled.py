"""Issue 4, "Nothing lost, nothing doubled", on one broker: services killed, the broker
crashed once, messages delivered twice (tests/faults/scenario.py)."""

from __future__ import annotations

import pytest

from tests.faults.scenario import TIMEOUT_S, nothing_is_lost_and_nothing_doubled
from tests.faults.stack import Stack

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


@pytest.mark.timeout(TIMEOUT_S)
async def test_nothing_is_lost_and_nothing_doubled_under_faults(stack: Stack) -> None:
    await nothing_is_lost_and_nothing_doubled(stack)
