"""Usage, alerts and expiry at handler level: provisioning's router in a fresh in-memory
broker, its tables in a temporary SQLite file, a clock the test moves, and the line
sweeper run one pass at a time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from services.provisioning import db, renewals, usage
from services.provisioning.alerts import AlertRules
from services.provisioning.line_sweeper import sweep_once
from shared import topics
from shared.events import LineAlertRaised, PlaceOrder, TopUpLine, UsageReported, order_id_for
from shared.kafka import Outgoing, message_headers
from tests.factories import random_iccid
from tests.unit.provisioning_fixtures import ProvisioningUnderTest, provisioning_under_test

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = AlertRules(data_used_percent=(75, 90), days_before_expiry=(3, 1))


@dataclass
class Provisioning(ProvisioningUnderTest):
    async def top_up(
        self, iccid: str, data_mb: int | None = 1000, validity_days: int = 30, **package: Any
    ) -> TopUpLine:
        order_id = uuid.uuid4()
        command = TopUpLine(
            order_id=order_id, iccid=iccid, package_id="eu-1gb-7d", data_mb=data_mb,
            validity_days=validity_days, idempotency_key=f"{order_id}:topup", **package,
        )  # fmt: skip
        await self.service.send(topics.PROVISIONING_COMMANDS, command)
        return command

    async def report(self, iccid: str, used_mb: int) -> UsageReported:
        report = UsageReported(
            event_id=uuid.uuid4(),
            iccid=iccid,
            used_mb=used_mb,
            period_start=self.clock() - timedelta(minutes=10),
            period_end=self.clock(),
        )
        await self.publish(report)
        return report

    async def publish(self, report: UsageReported) -> None:
        """As the carrier would: keyed by the line, with the type and event_id headers."""
        await self.service.broker.publish(
            report.model_dump(mode="json"),
            topic=topics.CARRIER_USAGE,
            key=report.iccid.encode(),
            headers=message_headers(report),
        )
        await self.service.relay()

    async def sweep(self) -> int:
        looked_at = await sweep_once(self.service.sessions, self.provisioner)
        await self.service.relay()  # what the outbox relay does after the pass commits
        return looked_at

    def events(self, iccid: str, type_: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.line_events
            if e["iccid"] == iccid and (type_ is None or e["type"] == type_)
        ]

    def alerts(self, iccid: str) -> list[str]:
        return [e["alert"] for e in self.events(iccid, "LineAlertRaised")]

    async def usage(self, iccid: str) -> dict[str, Any]:
        response = await self.http.get(f"/lines/{iccid}/usage")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def count(self, table: Any, iccid: str) -> int:
        async with self.service.sessions() as session:
            query = select(func.count()).select_from(table).where(table.c.iccid == iccid)
            return int(await session.scalar(query) or 0)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Provisioning]:
    async with provisioning_under_test(tmp_path, START, alerts=RULES) as provisioning:
        yield Provisioning(**vars(provisioning))


async def test_an_applied_top_up_starts_a_package_cycle_with_the_data_it_left(
    rig: Provisioning,
) -> None:
    iccid = random_iccid()
    first = await rig.top_up(iccid, 1000)
    await rig.report(iccid, 400)
    second = await rig.top_up(iccid, 500)
    cycle = (await rig.usage(iccid))["cycle"]
    assert cycle["order_id"] == str(second.order_id) != str(first.order_id)
    assert (cycle["quota_mb"], cycle["used_mb"], cycle["remaining_mb"]) == (1100, 0, 1100)
    assert (cycle["overage_mb"], cycle["percent_used"], cycle["expired"]) == (0, 0.0, False)


async def test_a_usage_report_is_counted_once_however_often_it_is_delivered(
    rig: Provisioning,
) -> None:
    iccid = random_iccid()
    await rig.top_up(iccid, 1000)
    report = await rig.report(iccid, 300)
    await rig.publish(report)
    await rig.publish(report)
    usage = await rig.usage(iccid)
    assert (usage["cycle"]["used_mb"], usage["cycle"]["remaining_mb"]) == (300, 700)
    assert [(r["report_id"], r["used_mb"], r["applied_mb"]) for r in usage["reports"]] == [
        (str(report.event_id), 300, 300)
    ]


async def test_a_line_used_down_raises_each_alert_once_in_order(rig: Provisioning) -> None:
    iccid = random_iccid()
    top_up = await rig.top_up(iccid, 1000)
    first = await rig.report(iccid, 800)
    assert rig.alerts(iccid) == ["data_used_75"]
    await rig.publish(first)
    await rig.report(iccid, 10)
    assert rig.alerts(iccid) == ["data_used_75"]
    await rig.report(iccid, 150)
    await rig.report(iccid, 100)
    await rig.report(iccid, 100)
    assert rig.alerts(iccid) == ["data_used_75", "data_used_90", "data_exhausted"]
    exhausted = rig.events(iccid, "LineAlertRaised")[-1]
    assert exhausted["order_id"] == str(top_up.order_id)
    assert exhausted["kind"] == "data_exhausted"
    assert (exhausted["data_quota_mb"], exhausted["data_used_mb"]) == (1000, 1060)
    assert (exhausted["data_remaining_mb"], exhausted["overage_mb"]) == (0, 60)
    assert await rig.count(db.line_alerts, iccid) == 3


async def test_one_report_past_several_thresholds_raises_them_all_at_once(
    rig: Provisioning,
) -> None:
    iccid = random_iccid()
    await rig.top_up(iccid, 1000)
    await rig.report(iccid, 1000)
    assert rig.alerts(iccid) == ["data_used_75", "data_used_90", "data_exhausted"]
    alerts = (await rig.http.get(f"/lines/{iccid}/alerts")).json()
    assert [a["alert"] for a in alerts] == ["data_exhausted", "data_used_90", "data_used_75"]
    assert alerts[0]["event_id"] == rig.events(iccid, "LineAlertRaised")[-1]["event_id"]


async def test_usage_beyond_the_balance_leaves_it_at_zero_and_records_the_overage(
    rig: Provisioning,
) -> None:
    iccid = random_iccid()
    await rig.top_up(iccid, 1000)
    await rig.report(iccid, 900)
    await rig.report(iccid, 300)
    usage = await rig.usage(iccid)
    cycle = usage["cycle"]
    assert (cycle["used_mb"], cycle["remaining_mb"], cycle["overage_mb"]) == (1200, 0, 200)
    assert cycle["percent_used"] == 100.0
    assert [(r["used_mb"], r["applied_mb"], r["overage_mb"]) for r in usage["reports"]] == [
        (300, 100, 200),
        (900, 900, 0),
    ]
    line = (await rig.http.get(f"/lines/{iccid}")).json()
    assert line["data_remaining_mb"] == 0


async def test_a_new_top_up_starts_a_new_cycle_whose_alerts_fire_again(
    rig: Provisioning,
) -> None:
    iccid = random_iccid()
    await rig.top_up(iccid, 1000)
    await rig.report(iccid, 800)
    renewal = await rig.top_up(iccid, 1000)
    await rig.report(iccid, 900)
    assert rig.alerts(iccid) == ["data_used_75", "data_used_75"]
    assert rig.events(iccid, "LineAlertRaised")[-1]["order_id"] == str(renewal.order_id)
    assert rig.events(iccid, "LineAlertRaised")[-1]["data_quota_mb"] == 1200


async def test_an_uncapped_unlimited_line_raises_no_data_alerts(rig: Provisioning) -> None:
    iccid = random_iccid()
    await rig.top_up(iccid, None)
    await rig.report(iccid, 100_000)
    cycle = (await rig.usage(iccid))["cycle"]
    assert (cycle["quota_mb"], cycle["remaining_mb"], cycle["percent_used"]) == (None, None, None)
    assert (cycle["used_mb"], cycle["overage_mb"]) == (100_000, 0)
    assert rig.alerts(iccid) == []


async def test_an_unlimited_line_counts_its_fair_use_allowance(rig: Provisioning) -> None:
    iccid = random_iccid()
    await rig.top_up(iccid, None, fair_use_mb=2000)
    await rig.report(iccid, 1600)
    assert rig.alerts(iccid) == ["data_used_75"]
    alert = rig.events(iccid, "LineAlertRaised")[0]
    assert (alert["data_quota_mb"], alert["data_remaining_mb"]) == (2000, None)
    assert (await rig.usage(iccid))["cycle"]["remaining_mb"] == 400


async def test_usage_of_a_line_never_topped_up_is_kept_as_overage_without_alerts(
    rig: Provisioning,
) -> None:
    iccid = random_iccid()
    await rig.report(iccid, 50)
    assert rig.events(iccid) == []
    async with rig.service.sessions() as session:
        row = (
            await session.execute(select(db.usage_reports).where(db.usage_reports.c.iccid == iccid))
        ).one()
    assert (row.used_mb, row.applied_mb, row.overage_mb, row.cycle_order_id) == (50, 0, 50, None)
    assert (await rig.http.get(f"/lines/{iccid}/usage")).status_code == 404


async def test_the_sweeper_forfeits_what_an_expired_line_had_left_once(
    rig: Provisioning,
) -> None:
    iccid = random_iccid()
    top_up = await rig.top_up(iccid, 1000, validity_days=7)
    await rig.report(iccid, 100)
    rig.clock.advance(timedelta(days=7).total_seconds())
    await rig.sweep()
    await rig.sweep()
    assert [e["type"] for e in rig.events(iccid)][-2:] == ["DataForfeited", "LineAlertRaised"]
    forfeited = rig.events(iccid, "DataForfeited")
    assert len(forfeited) == 1
    assert forfeited[0]["order_id"] == str(top_up.order_id)
    assert (forfeited[0]["forfeited_mb"], forfeited[0]["fair_use_forfeited_mb"]) == (900, None)
    assert rig.alerts(iccid)[-1] == "validity_ended"
    assert rig.alerts(iccid).count("validity_ended") == 1
    cycle = (await rig.usage(iccid))["cycle"]
    assert (cycle["expired"], cycle["remaining_mb"], cycle["used_mb"]) == (True, 0, 100)


async def test_an_unlimited_line_forfeits_its_allowance_too(rig: Provisioning) -> None:
    iccid = random_iccid()
    await rig.top_up(iccid, None, fair_use_mb=2000, validity_days=1)
    rig.clock.advance(timedelta(days=1).total_seconds())
    await rig.sweep()
    forfeited = rig.events(iccid, "DataForfeited")[0]
    assert (forfeited["forfeited_mb"], forfeited["fair_use_forfeited_mb"]) == (0, 2000)


async def test_a_report_after_validity_ended_forfeits_first_and_is_all_overage(
    rig: Provisioning,
) -> None:
    iccid = random_iccid()
    await rig.top_up(iccid, 1000, validity_days=7)
    rig.clock.advance(timedelta(days=8).total_seconds())
    await rig.report(iccid, 50)
    assert [e["type"] for e in rig.events(iccid)][-2:] == ["DataForfeited", "LineAlertRaised"]
    assert rig.alerts(iccid)[-1] == "validity_ended"
    usage = await rig.usage(iccid)
    assert (usage["cycle"]["used_mb"], usage["cycle"]["overage_mb"]) == (50, 50)
    assert usage["reports"][0]["applied_mb"] == 0
    await rig.sweep()
    assert len(rig.events(iccid, "DataForfeited")) == 1


async def test_expiry_warnings_are_raised_by_the_sweeper_once_each(rig: Provisioning) -> None:
    iccid = random_iccid()
    await rig.top_up(iccid, 1000, validity_days=10)
    await rig.sweep()
    assert rig.alerts(iccid) == []
    rig.clock.advance(timedelta(days=7).total_seconds())
    await rig.sweep()
    await rig.sweep()
    assert rig.alerts(iccid) == ["expires_in_3d"]
    rig.clock.advance(timedelta(days=2).total_seconds())
    await rig.sweep()
    await rig.sweep()
    assert rig.alerts(iccid) == ["expires_in_3d", "expires_in_1d"]
    assert [e["kind"] for e in rig.events(iccid, "LineAlertRaised")] == ["expiry_near"] * 2


async def test_a_failing_line_does_not_stop_the_sweep_of_the_others(
    rig: Provisioning, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, fine = random_iccid(), random_iccid()
    await rig.top_up(broken, 1000, validity_days=1)
    await rig.top_up(fine, 1000, validity_days=1)
    check_line = usage.check_line

    async def failing_for_one(sessions: Any, provisioner: Any, iccid: str) -> list[Outgoing]:
        if iccid == broken:
            raise RuntimeError("poison line")
        return await check_line(sessions, provisioner, iccid)

    monkeypatch.setattr(usage, "check_line", failing_for_one)  # as the sweeper calls it
    rig.clock.advance(timedelta(days=1).total_seconds())
    await rig.sweep()
    assert rig.events(broken, "DataForfeited") == []
    assert len(rig.events(fine, "DataForfeited")) == 1
    monkeypatch.undo()
    await rig.sweep()
    assert len(rig.events(broken, "DataForfeited")) == 1


async def test_what_auto_renewal_asks_for_is_staged_with_the_alerts(
    rig: Provisioning, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[list[str]] = []

    async def renew(
        session: Any, provisioner: Any, raised: list[LineAlertRaised], now: datetime
    ) -> list[Outgoing]:
        handed.append([a.alert for a in raised])
        request_id = f"autorenew:{raised[0].iccid}:test"
        order = PlaceOrder(
            request_id=request_id, order_id=order_id_for(request_id), iccid=raised[0].iccid,
            package_id="eu-1gb-7d", currency="EUR", payment_method="card",
            payment_token="tok_ok", msisdn="+447700900123", email="t@example.com",
        )  # fmt: skip
        return [(topics.ORDERS_COMMANDS, order)]

    monkeypatch.setattr(renewals, "on_alerts_raised", renew)
    iccid = random_iccid()
    await rig.top_up(iccid, 1000)
    await rig.report(iccid, 950)
    await rig.report(iccid, 10)
    assert handed == [["data_used_75", "data_used_90"]]
    assert [o["request_id"] for o in rig.orders_commands] == [f"autorenew:{iccid}:test"]


async def test_the_read_api_refuses_a_malformed_iccid_and_an_unknown_line(
    rig: Provisioning,
) -> None:
    for path in ("usage", "alerts"):
        malformed = await rig.http.get(f"/lines/89445001021983048x6/{path}")
        assert malformed.status_code == 422
        assert malformed.json()["detail"][0]["loc"] == ["path", "iccid"]
        unknown = await rig.http.get(f"/lines/{random_iccid()}/{path}")
        assert unknown.status_code == 404
        assert "never topped up" in unknown.json()["detail"]
