"""What an operator's search is taken for: an order id, an ICCID, or a request id."""

import uuid

import pytest

from services.operator.search import search_kind
from tests.factories import random_iccid


def test_a_uuid_is_taken_for_an_order_id() -> None:
    assert search_kind(str(uuid.uuid4())) == "order_id"
    assert search_kind(str(uuid.uuid4()).upper()) == "order_id"


@pytest.mark.parametrize("iccid", [random_iccid(), "89445001021983048260"])
def test_nineteen_or_twenty_digits_are_taken_for_an_iccid(iccid: str) -> None:
    assert search_kind(iccid) == "iccid"


@pytest.mark.parametrize(
    "query", ["req-42", "cli-7f3e", "894450010219830482", "894450010219830482601", "12345"]
)
def test_anything_else_is_taken_for_a_request_id(query: str) -> None:
    assert search_kind(query) == "request_id"
