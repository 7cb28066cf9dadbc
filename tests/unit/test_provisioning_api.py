"""The read API over a temporary SQLite file, its lines topped up through the flow itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.provisioning import api, db, provisioning
from services.provisioning.provisioning import Provisioner
from shared import db as shared_db
from shared.events import TopUpLine
from shared.http_guard import secure
from shared.logs import mask
from tests.credentials import READER
from tests.unit.carrier_fixtures import simulated_carrier

ICCID = "8944500102198304826"
SUSPENDED = "8944500102198304834"


@dataclass
class ReadApi:
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    provisioner: Provisioner

    async def top_up(self, iccid: str, data_mb: int | None, **extra: int) -> TopUpLine:
        order_id = uuid.uuid4()
        command = TopUpLine(
            order_id=order_id, iccid=iccid, package_id="eu-1gb-7d", data_mb=data_mb,
            validity_days=7, idempotency_key=f"{order_id}:topup", **extra,
        )  # fmt: skip
        await provisioning.top_up(self.sessions, self.provisioner, command)
        return command


@pytest.fixture
async def read_api(tmp_path: Path) -> AsyncIterator[ReadApi]:
    engine = shared_db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'provisioning.db'}")
    await shared_db.create_schema(engine, db.metadata)
    sessions = shared_db.sessions_for(engine)
    app = FastAPI()
    app.include_router(api.router)
    secure(app)
    app.state.sessions = sessions
    transport = httpx.ASGITransport(app=app)
    async with (
        simulated_carrier(tmp_path, carrier_suspended_iccids={SUSPENDED}) as carrier,
        httpx.AsyncClient(
            transport=transport, base_url="http://provisioning", headers=READER
        ) as client,
    ):
        yield ReadApi(client, sessions, Provisioner(carrier.adapter))
    await engine.dispose()


async def test_a_line_shows_its_balance_validity_and_top_up_history(read_api: ReadApi) -> None:
    first = await read_api.top_up(ICCID, 1024, bonus_mb=100)
    second = await read_api.top_up(ICCID, 5120)
    response = await read_api.client.get(f"/lines/{ICCID}")
    assert response.status_code == 200
    line = response.json()
    assert (line["valid"], line["data_remaining_mb"], line["unlimited"]) == (True, 6244, False)
    assert line["valid_until"] == line["topups"][1]["valid_until"]
    assert [
        (t["order_id"], t["data_mb"], t["bonus_mb"], t["validity_days"], t["status"])
        for t in line["topups"]
    ] == [
        (str(first.order_id), 1024, 100, 7, "APPLIED"),
        (str(second.order_id), 5120, 0, 7, "APPLIED"),
    ]
    assert all(t["applied_at"] for t in line["topups"])


async def test_an_unlimited_line_shows_its_fair_use_allowance(read_api: ReadApi) -> None:
    await read_api.top_up(ICCID, None, fair_use_mb=20_000)
    line = (await read_api.client.get(f"/lines/{ICCID}")).json()
    assert (line["unlimited"], line["fair_use_remaining_mb"]) == (True, 20_000)
    assert line["unlimited_until"] == line["valid_until"]
    assert line["topups"][0]["data_mb"] is None


async def test_a_failed_top_up_is_in_the_history_of_a_line_without_balance(
    read_api: ReadApi,
) -> None:
    await read_api.top_up(SUSPENDED, 1024)
    line = (await read_api.client.get(f"/lines/{SUSPENDED}")).json()
    assert (line["valid"], line["valid_until"], line["data_remaining_mb"]) == (False, None, 0)
    [failed] = line["topups"]
    assert (failed["status"], failed["failure_reason"], failed["applied_at"]) == (
        "FAILED", "line_suspended", None,
    )  # fmt: skip


async def test_the_history_alone_is_at_topups(read_api: ReadApi) -> None:
    command = await read_api.top_up(ICCID, 1024)
    response = await read_api.client.get(f"/lines/{ICCID}/topups")
    assert response.status_code == 200
    assert [t["order_id"] for t in response.json()] == [str(command.order_id)]


@pytest.mark.parametrize("path", ["/lines/{iccid}", "/lines/{iccid}/topups"])
async def test_an_unknown_line_is_not_found(read_api: ReadApi, path: str) -> None:
    response = await read_api.client.get(path.format(iccid=ICCID))
    assert response.status_code == 404
    assert response.json() == {"detail": f"no line {mask(ICCID)}: it was never topped up"}


@pytest.mark.parametrize(
    "iccid", ["1944500102198304823", "89445", "89445001021983048x6", "8944500102198304826%0A"]
)
async def test_a_malformed_iccid_is_unprocessable(read_api: ReadApi, iccid: str) -> None:
    response = await read_api.client.get(f"/lines/{iccid}")
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["path", "iccid"]
    assert "input" not in problem  # never echoed


async def test_an_iccid_with_a_wrong_check_digit_names_no_line(read_api: ReadApi) -> None:
    response = await read_api.client.get("/lines/8944500102198304827")
    assert response.status_code == 404
    assert "fails the Luhn check" in response.json()["detail"]
