"""Provisioning's HTTP read API: a line's balance, validity and top-up history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from services.provisioning import auto_renewal_api, provisioning, usage_api
from services.provisioning.balances import balance_at
from services.provisioning.db import TopUp
from services.provisioning.known_lines import NOT_FOUND, Iccid, check_iccid, line_not_found
from services.provisioning.provisioning import LineReport
from shared.access import Reader

router = APIRouter()


class TopUpView(BaseModel):
    order_id: uuid.UUID
    package_id: str
    data_mb: int | None  # the package's data, without bonus; None: unlimited
    bonus_mb: int
    fair_use_mb: int | None
    validity_days: int
    status: str
    attempts: int
    failure_reason: str | None
    last_error: str | None
    applied_at: datetime | None
    valid_until: datetime | None  # the line's validity once this top-up was applied


class LineView(BaseModel):
    iccid: str
    valid: bool
    data_remaining_mb: int  # usable now: 0 once the line has expired
    valid_until: datetime | None  # None: never topped up; in the past: expired
    unlimited: bool
    unlimited_until: datetime | None
    fair_use_remaining_mb: int | None  # full-speed allowance while unlimited; None: uncapped
    topups: list[TopUpView]


@router.get("/lines/{iccid}", responses=NOT_FOUND)
async def get_line(iccid: Iccid, request: Request, _who: Reader) -> LineView:
    report = await _report(request, iccid)
    now = datetime.now(UTC)
    usable = balance_at(report.balance, now)
    unlimited = usable is not None and usable.unlimited_at(now)
    return LineView(
        iccid=iccid,
        valid=usable is not None,
        data_remaining_mb=0 if usable is None else usable.data_remaining_mb,
        valid_until=None if report.balance is None else report.balance.valid_until,
        unlimited=unlimited,
        unlimited_until=usable.unlimited_until if usable and unlimited else None,
        fair_use_remaining_mb=usable.fair_use_remaining_mb if usable and unlimited else None,
        topups=[_topup_view(t) for t in report.topups],
    )


@router.get("/lines/{iccid}/topups", responses=NOT_FOUND)
async def get_topups(iccid: Iccid, request: Request, _who: Reader) -> list[TopUpView]:
    return [_topup_view(t) for t in (await _report(request, iccid)).topups]


async def _report(request: Request, iccid: str) -> LineReport:
    check_iccid(iccid)
    async with request.app.state.sessions() as session:
        report = await provisioning.line_report(session, iccid)
    if report is None:
        raise line_not_found(iccid)
    return report


def _topup_view(topup: TopUp) -> TopUpView:
    return TopUpView(
        order_id=topup.order_id,
        package_id=topup.package_id,
        data_mb=topup.package.data_mb,
        bonus_mb=topup.package.bonus_mb,
        fair_use_mb=topup.package.fair_use_mb,
        validity_days=topup.package.validity_days,
        status=topup.status,
        attempts=topup.attempts,
        failure_reason=topup.failure_reason,
        last_error=topup.last_error,
        applied_at=topup.applied_at,
        valid_until=topup.valid_until,
    )


# A line's usage and alerts, and its auto-renewal settings.
router.include_router(usage_api.router)
router.include_router(auto_renewal_api.router)
