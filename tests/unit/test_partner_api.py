"""The carrier adapter (services/provisioning/partner_api.py) against the carrier
simulator: its token, what each answer of the partner API means to the saga, and its
edge cases (a few against answers no simulator gives, through httpx.MockTransport)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import delete

from services.carrier_simulator import ledger
from services.provisioning.carrier import (
    Applied,
    CarrierTimeout,
    CarrierUnavailable,
    Failed,
    NotFound,
)
from services.provisioning.partner_api import PartnerApiCarrier, retry_after_s
from shared.bounded_answers import MAX_ANSWER_BYTES, BoundedTransport
from tests.factories import random_iccid
from tests.unit.carrier_fixtures import SimulatedCarrier, simulated_carrier
from tests.unit.outsized_answers import CHUNK, endless, gzip_bomb

ONE_GB = "eurolink-7days-1gb-topup"
FIVE_GB = "eurolink-30days-5gb-topup"


def new_key() -> str:
    return f"{uuid.uuid4()}:topup"


async def test_a_top_up_is_applied_once_and_found_again_by_its_key(tmp_path: Path) -> None:
    async with simulated_carrier(tmp_path) as carrier:
        key, iccid = new_key(), random_iccid()
        assert await carrier.adapter.status(key, iccid) == NotFound()
        applied = await carrier.adapter.top_up(key, iccid, ONE_GB)
        assert isinstance(applied, Applied)
        assert await carrier.adapter.status(key, iccid) == applied
        assert [o.description for o in await carrier.orders()] == [key]


async def test_the_token_is_fetched_once_and_reused(tmp_path: Path) -> None:
    async with simulated_carrier(tmp_path) as carrier:
        iccid = random_iccid()
        for _ in range(3):
            await carrier.adapter.top_up(new_key(), iccid, ONE_GB)
        assert carrier.sent.count(("POST", "/v2/token")) == 1


async def test_a_token_the_carrier_no_longer_accepts_is_renewed_once_and_the_call_sent_again(
    tmp_path: Path,
) -> None:
    async with simulated_carrier(tmp_path) as carrier:
        iccid = random_iccid()
        await carrier.adapter.top_up(new_key(), iccid, ONE_GB)
        await forget_tokens(carrier)  # e.g. revoked, or the carrier lost its sessions
        key = new_key()
        assert isinstance(await carrier.adapter.top_up(key, iccid, ONE_GB), Applied)
        assert carrier.sent.count(("POST", "/v2/token")) == 2
        assert carrier.top_up_requests() == 3  # the second refused (401), sent again
        assert len(await carrier.orders(description=key)) == 1


async def test_an_expiring_token_is_renewed_before_it_expires(tmp_path: Path) -> None:
    now = [0.0]
    async with simulated_carrier(tmp_path, carrier_token_ttl_s=100) as carrier:
        adapter = PartnerApiCarrier(
            carrier.adapter._client, "topup-local", SecretStr("topup-local-secret"), 1.0,
            clock=lambda: now[0],
        )  # fmt: skip
        iccid = random_iccid()
        await adapter.usage(iccid)
        now[0] = 89.0  # within the last tenth of its life
        await adapter.usage(iccid)
        assert carrier.sent.count(("POST", "/v2/token")) == 1
        now[0] = 91.0
        await adapter.usage(iccid)
        assert carrier.sent.count(("POST", "/v2/token")) == 2


async def test_wrong_credentials_are_unavailable_and_the_secret_is_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with simulated_carrier(tmp_path) as carrier:
        wrong = PartnerApiCarrier(
            carrier.adapter._client, "topup-local", SecretStr("not-the-secret"), 1.0
        )
        with pytest.raises(CarrierUnavailable, match="client credentials"):
            await wrong.top_up(new_key(), random_iccid(), ONE_GB)
        assert await carrier.orders() == []
    assert "not-the-secret" not in caplog.text
    assert "topup-local-secret" not in caplog.text


async def test_beyond_the_rate_limit_the_carrier_says_when_to_come_back(tmp_path: Path) -> None:
    async with simulated_carrier(tmp_path, carrier_rate_limit_per_s=2) as carrier:
        iccid = random_iccid()
        await carrier.adapter.usage(iccid)  # the token and this: two in this second
        with pytest.raises(CarrierUnavailable) as refused:
            await carrier.adapter.top_up(new_key(), iccid, ONE_GB)
        assert refused.value.retry_after_s == 1.0
        assert await carrier.orders() == []


async def test_a_busy_carrier_does_nothing_and_says_so(tmp_path: Path) -> None:
    async with simulated_carrier(tmp_path) as carrier:
        await carrier.adapter.usage(random_iccid())  # a token first
        carrier.behaviour.transient_failure_rate = 1.0
        with pytest.raises(CarrierUnavailable, match="503"):
            await carrier.adapter.top_up(new_key(), random_iccid(), ONE_GB)
        assert await carrier.orders() == []


async def test_a_top_up_answered_too_late_is_unknown_and_the_line_tells_it_was_applied(
    tmp_path: Path,
) -> None:
    async with simulated_carrier(tmp_path, timeout_s=0.2, carrier_hang_s=0.6) as carrier:
        key, iccid = new_key(), random_iccid()
        carrier.behaviour.timeout_rate = carrier.behaviour.timeout_applied_rate = 1.0
        with pytest.raises(CarrierTimeout):
            await carrier.adapter.top_up(key, iccid, ONE_GB)
        carrier.behaviour.timeout_rate = 0.0
        assert isinstance(await carrier.adapter.status(key, iccid), Applied)
        assert len(await carrier.orders(description=key)) == 1


async def test_a_top_up_lost_before_it_was_processed_is_not_found_afterwards(
    tmp_path: Path,
) -> None:
    # Patient enough for a busy machine; the lost answer is held longer still.
    async with simulated_carrier(tmp_path, timeout_s=0.5, carrier_hang_s=1.5) as carrier:
        key, iccid = new_key(), random_iccid()
        assert await carrier.adapter.status(key, iccid) == NotFound()  # the token, first
        carrier.behaviour.timeout_rate, carrier.behaviour.timeout_applied_rate = 1.0, 0.0
        with pytest.raises(CarrierTimeout):
            await carrier.adapter.top_up(key, iccid, ONE_GB)
        carrier.behaviour.timeout_rate = 0.0
        assert await carrier.adapter.status(key, iccid) == NotFound()


async def test_a_top_up_the_carrier_cannot_place_within_its_deadline_is_never_placed(
    tmp_path: Path,
) -> None:
    async with simulated_carrier(
        tmp_path, timeout_s=5, carrier_request_deadline_s=0.1, over_sockets=True
    ) as carrier:
        key, iccid = new_key(), random_iccid()
        assert await carrier.adapter.status(key, iccid) == NotFound()  # the token, fast
        carrier.behaviour.latency_ms = 400  # 0.2-0.6 s before it is placed: too late
        with pytest.raises(CarrierTimeout, match="504"):
            await carrier.adapter.top_up(key, iccid, ONE_GB)
        assert await carrier.orders() == []


async def test_only_the_exact_key_on_that_line_settles_a_top_up(tmp_path: Path) -> None:
    async with simulated_carrier(tmp_path) as carrier:
        key, iccid = new_key(), random_iccid()
        await carrier.adapter.top_up(f"{key}-2", iccid, ONE_GB)  # holds the key as a part
        await carrier.adapter.top_up(key, random_iccid(), ONE_GB)  # another line
        assert await carrier.adapter.status(key, iccid) == NotFound()


@pytest.mark.parametrize(
    ("iccid", "package", "reason"),
    [
        pytest.param("8900000000000000000", ONE_GB, "line_unknown", id="not-an-e118-iccid"),
        pytest.param("8944500102198304834", ONE_GB, "line_suspended", id="suspended"),
        pytest.param(None, "no-such-package-topup", "package_unknown", id="unknown-package"),
    ],
)
async def test_a_refused_top_up_fails_for_good_in_our_own_words(
    tmp_path: Path, iccid: str | None, package: str, reason: str
) -> None:
    suspended = {"8944500102198304834"}
    async with simulated_carrier(tmp_path, carrier_suspended_iccids=suspended) as carrier:
        refused = await carrier.adapter.top_up(new_key(), iccid or random_iccid(), package)
        assert isinstance(refused, Failed)
        assert (refused.permanent, refused.reason) == (True, reason)
        assert "iccid" not in refused.message
        assert await carrier.orders() == []


async def test_the_line_usage_is_the_carriers_count_of_its_packages(tmp_path: Path) -> None:
    async with simulated_carrier(tmp_path) as carrier:
        iccid = random_iccid()
        assert (await carrier.adapter.usage(iccid)) is not None
        await carrier.adapter.top_up(new_key(), iccid, ONE_GB)
        await carrier.adapter.top_up(new_key(), iccid, FIVE_GB)
        async with carrier.app.state.sessions.begin() as session:
            await ledger.draw_usage(session, iccid, 1500, datetime.now(UTC))
        usage = await carrier.adapter.usage(iccid)
        assert usage is not None
        assert (usage.total_mb, usage.remaining_mb, usage.unlimited, usage.status) == (
            6144, 4644, False, "ACTIVE",
        )  # fmt: skip
        assert usage.expires_at is not None
        assert usage.expires_at > datetime.now(UTC) + timedelta(days=29)
        held = await carrier.adapter.held_packages(iccid)
        assert held is not None
        assert [(p.package_id, p.remaining_mb) for p in held] == [(FIVE_GB, 4644), (ONE_GB, 0)]
        assert await carrier.adapter.usage("8900000000000000000") is None


async def test_the_packages_a_line_may_buy_are_listed(tmp_path: Path) -> None:
    async with simulated_carrier(tmp_path) as carrier:
        offered = await carrier.adapter.topup_packages(random_iccid())
        assert offered is not None
        assert ONE_GB in {package.package_id for package in offered}
        assert await carrier.adapter.topup_packages("8900000000000000000") is None


async def test_a_carrier_that_is_not_there_is_unavailable() -> None:
    adapter = PartnerApiCarrier.connect("http://127.0.0.1:9", "id", SecretStr("secret"), 1.0)
    try:
        with pytest.raises(CarrierUnavailable, match="not reachable"):
            await adapter.top_up(new_key(), random_iccid(), ONE_GB)
    finally:
        await adapter.aclose()


def scripted(top_up: Callable[[httpx.Request], httpx.Response]) -> PartnerApiCarrier:
    """An adapter whose carrier grants tokens and answers top-ups with `top_up`."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/token":
            granted = {"token_type": "Bearer", "expires_in": 3600, "access_token": "t"}
            return httpx.Response(200, json={"data": granted, "meta": {"message": "success"}})
        return top_up(request)

    # Bounded, as the adapter's own client is (shared/bounded_answers.py).
    bounded = BoundedTransport(httpx.MockTransport(answer))
    client = httpx.AsyncClient(transport=bounded, base_url="http://c")
    return PartnerApiCarrier(client, "id", SecretStr("secret"), 1.0)


@pytest.mark.parametrize("status", [500, 502, 504, 201, 202, 302])
async def test_an_answer_that_is_neither_done_nor_refused_leaves_a_top_up_unknown(
    status: int,
) -> None:
    adapter = scripted(lambda _: httpx.Response(status, text="oops"))
    with pytest.raises(CarrierTimeout, match=str(status)):
        await adapter.top_up(new_key(), random_iccid(), ONE_GB)


async def test_an_unreadable_answer_to_a_top_up_leaves_its_outcome_unknown() -> None:
    adapter = scripted(lambda _: httpx.Response(200, text="<html>"))
    with pytest.raises(CarrierTimeout, match="could not be read"):
        await adapter.top_up(new_key(), random_iccid(), ONE_GB)


async def test_a_refusal_with_a_long_text_is_not_echoed() -> None:
    long = "x" * 100_000
    body = {"data": {"package_id": long}, "meta": {"message": long}}
    adapter = scripted(lambda _: httpx.Response(422, json=body))
    refused = await adapter.top_up(new_key(), random_iccid(), ONE_GB)
    assert isinstance(refused, Failed)
    assert refused.reason == "package_unknown"
    assert len(refused.message) < 100


async def test_the_top_up_is_sent_as_a_form_with_our_key_as_its_description() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(422, json={"data": {"package_id": "x"}, "meta": {"message": "m"}})

    key = new_key()
    await scripted(record).top_up(key, "8944500102198304826", ONE_GB)
    [request] = seen
    assert request.headers["authorization"] == "Bearer t"
    assert request.headers["content-type"].startswith("multipart/form-data")
    body = request.content.decode()
    for name, value in (
        ("package_id", ONE_GB),
        ("iccid", "8944500102198304826"),
        ("description", key),
    ):
        assert f'name="{name}"\r\n\r\n{value}\r\n' in body


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0), ("", 1.0), ("soon", 1.0), ("-3", 0.0), ("99999", 300.0), ("2.5", 2.5),
        ("nan", 1.0), ("inf", 300.0), ("-inf", 0.0), ("1e12", 300.0),
    ],
)  # fmt: skip
def test_retry_after_is_read_in_seconds_and_bounded(header: str, seconds: float) -> None:
    assert retry_after_s({"retry-after": header} if header else {}) == seconds


def test_retry_after_may_be_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_s({"retry-after": later}) <= 30


async def forget_tokens(carrier: SimulatedCarrier) -> None:
    async with carrier.app.state.sessions.begin() as session:
        await session.execute(delete(ledger.access_tokens))
    carrier.app.state.simulator.tokens.clear()


def orders_answer(key: str, status: object) -> Callable[[httpx.Request], httpx.Response]:
    """A carrier whose order list holds one order with our key, in `status`."""
    order = {"id": 7, "code": "20261206-000007", "description": key, "status": status}
    return lambda _: httpx.Response(200, json={"data": [order], "meta": {}})


@pytest.mark.parametrize(
    "status", [{"slug": "pending"}, {"slug": ["completed"]}, "completed", None, 7]
)
async def test_an_order_with_our_key_in_a_state_we_cannot_read_is_never_sent_again(
    status: object,
) -> None:
    key = new_key()
    adapter = scripted(orders_answer(key, status))
    with pytest.raises(CarrierUnavailable, match="an order carries the key"):
        await adapter.status(key, random_iccid())


@pytest.mark.parametrize(
    "granted",
    [
        {"access_token": "t", "expires_in": "soon"},
        {"access_token": "t", "expires_in": [1]},
        {"access_token": "tök", "expires_in": 60},
        {"access_token": "a\r\nb", "expires_in": 60},
        {"access_token": "t" * 5000, "expires_in": 60},
        {"access_token": 5, "expires_in": 60},
    ],
)
async def test_a_token_answer_we_cannot_use_is_unavailable_not_a_crash(
    granted: dict[str, object],
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": granted, "meta": {}})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://c")
    adapter = PartnerApiCarrier(client, "id", SecretStr("secret"), 1.0)
    with pytest.raises(CarrierUnavailable, match="token answer"):
        await adapter.top_up(new_key(), random_iccid(), ONE_GB)


async def test_an_answer_too_large_leaves_a_top_up_unknown_and_is_never_read_whole() -> None:
    sent: list[int] = []
    adapter = scripted(lambda _: httpx.Response(200, content=endless(sent)))
    with pytest.raises(CarrierTimeout, match="AnswerTooLarge"):
        await adapter.top_up(new_key(), random_iccid(), ONE_GB)
    assert len(sent) * CHUNK <= MAX_ANSWER_BYTES + 2 * CHUNK
    with pytest.raises(CarrierUnavailable, match="AnswerTooLarge"):
        await adapter.status(new_key(), random_iccid())


async def test_an_answer_declaring_a_size_over_the_bound_is_not_read_at_all() -> None:
    adapter = scripted(
        lambda _: httpx.Response(200, headers={"Content-Length": str(10**12)}, content=b"{}")
    )
    with pytest.raises(CarrierTimeout, match="AnswerTooLarge"):
        await adapter.top_up(new_key(), random_iccid(), ONE_GB)


@pytest.mark.parametrize("encoding", ["gzip", "gzip, gzip", "deflate", "br", "GZIP"])
async def test_a_compressed_answer_is_refused_unread_and_none_is_asked_for(encoding: str) -> None:
    asked_for: list[str] = []

    def bomb(request: httpx.Request) -> httpx.Response:
        asked_for.append(request.headers.get("accept-encoding", ""))
        return httpx.Response(200, headers={"Content-Encoding": encoding}, content=gzip_bomb())

    with pytest.raises(CarrierTimeout, match="AnswerTooLarge"):
        await scripted(bomb).top_up(new_key(), random_iccid(), ONE_GB)
    assert asked_for == ["identity"]
