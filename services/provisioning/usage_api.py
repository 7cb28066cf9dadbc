"""A line's usage and alerts over HTTP: its current package cycle with the latest usage
reports, and every alert it raised (docs/usage-alerts.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.provisioning import usage_db
from services.provisioning.alerts import percent_used
from services.provisioning.known_lines import NOT_FOUND, Iccid, known_line
from services.provisioning.provisioning import Provisioner
from services.provisioning.usage import cycle_of
from shared.access import Reader

router = APIRouter()

LATEST_REPORTS: Final = 50


class CycleView(BaseModel):
    order_id: uuid.UUID = Field(description="the order whose applied top-up started the cycle")
    started_at: datetime
    quota_mb: int | None = Field(description="data at the start; None: uncapped unlimited")
    used_mb: int = Field(description="everything reported in the cycle, overage included")
    remaining_mb: int | None = Field(
        description="what usage draws from now (fair-use allowance while unlimited); 0 expired"
    )
    overage_mb: int = Field(description="used beyond the balance: recorded, never negative")
    percent_used: float | None = Field(description="100 * (used - overage) / quota, at most 100")
    valid_until: datetime
    expired: bool


class UsageReportView(BaseModel):
    report_id: uuid.UUID
    used_mb: int
    applied_mb: int = Field(description="taken from the balance")
    overage_mb: int
    period_start: datetime
    period_end: datetime
    received_at: datetime
    cycle_order_id: uuid.UUID | None = Field(description="None: the line had no cycle then")


class UsageView(BaseModel):
    iccid: str
    cycle: CycleView | None  # None: no top-up applied yet
    reports: list[UsageReportView] = Field(description=f"the latest {LATEST_REPORTS}, newest first")


class AlertView(BaseModel):
    alert: str
    kind: str
    cycle_order_id: uuid.UUID
    raised_at: datetime
    event_id: uuid.UUID = Field(description="the LineAlertRaised event's id")
    data_used_mb: int
    data_remaining_mb: int | None
    overage_mb: int
    valid_until: datetime


@router.get("/lines/{iccid}/usage", responses=NOT_FOUND)
async def get_usage(iccid: Iccid, request: Request, _who: Reader) -> UsageView:
    provisioner: Provisioner = request.app.state.provisioner
    now = provisioner.clock()
    async with request.app.state.sessions() as session:
        await known_line(session, iccid)
        # Reports first: a report and its effect on the cycle commit together, so the
        # cycle read after it counts every report shown (each statement sees at least
        # what the one before did), never a report whose usage it lacks.
        reports = await usage_db.latest_usage_reports(session, iccid, LATEST_REPORTS)
        line = await usage_db.find_cycle(session, iccid)
    cycle = None
    if line is not None:
        current = cycle_of(line, now)
        cycle = CycleView(
            order_id=current.order_id,
            started_at=current.started_at,
            quota_mb=current.quota_mb,
            used_mb=current.used_mb,
            remaining_mb=current.remaining_mb,
            overage_mb=current.overage_mb,
            percent_used=percent_used(current),
            valid_until=current.valid_until,
            expired=current.expired or now >= current.valid_until,
        )
    return UsageView(
        iccid=iccid,
        cycle=cycle,
        reports=[UsageReportView.model_validate(r, from_attributes=True) for r in reports],
    )


@router.get("/lines/{iccid}/alerts", responses=NOT_FOUND)
async def get_alerts(iccid: Iccid, request: Request, _who: Reader) -> list[AlertView]:
    """Every alert the line raised, newest first (those raised together: the later
    threshold first)."""
    provisioner: Provisioner = request.app.state.provisioner
    async with request.app.state.sessions() as session:
        await known_line(session, iccid)
        alerts = await usage_db.alerts_of(session, iccid)
    rank = {name: i for i, name in enumerate(provisioner.alerts.names())}
    alerts.sort(key=lambda a: (a.raised_at, rank.get(a.alert, -1)), reverse=True)
    return [AlertView.model_validate(a, from_attributes=True) for a in alerts]
