"""`topup line usage | alerts | auto-renew` against provisioning's HTTP API, answered by
an httpx.MockTransport with provisioning's own response models (so the shapes the CLI
reads are the ones the API writes)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner, Result

from services.cli import provisioning_api
from services.cli.main import app
from services.provisioning.auto_renewal_api import (
    AutoRenewalRequest,
    AutoRenewalView,
    RenewalOrderView,
)
from services.provisioning.usage_api import AlertView, CycleView, UsageReportView, UsageView
from tests.cli_output import rows, succeeded
from tests.factories import random_iccid

NOW = datetime(2026, 11, 24, 17, 21, 5, tzinfo=UTC)
ORDER = uuid.uuid4()

Answer = tuple[int, Any]


@dataclass
class FakeProvisioning:
    """Answers for (method, path); every request it was sent."""

    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def answer(
        self, method: str, path: str, status: int, body: BaseModel | list[Any] | dict[str, Any]
    ) -> None:
        if isinstance(body, BaseModel):
            body = body.model_dump(mode="json")
        elif isinstance(body, list):
            body = [b.model_dump(mode="json") if isinstance(b, BaseModel) else b for b in body]
        self.answers[(method, path)] = (status, body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answers.get(
            (request.method, request.url.path), (404, {"detail": "Not Found"})
        )
        return httpx.Response(status, json=body)


@pytest.fixture
def provisioning(monkeypatch: pytest.MonkeyPatch) -> FakeProvisioning:
    fake = FakeProvisioning()
    monkeypatch.setattr(provisioning_api, "transport", httpx.MockTransport(fake.handle))
    return fake


def topup(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def failed_in_one_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output
    return result.output


def cycle(**changes: Any) -> CycleView:
    values: dict[str, Any] = {
        "order_id": ORDER, "started_at": NOW - timedelta(minutes=5), "quota_mb": 1024,
        "used_mb": 800, "remaining_mb": 224, "overage_mb": 0, "percent_used": 78.125,
        "valid_until": NOW + timedelta(days=7), "expired": False,
    }  # fmt: skip
    return CycleView(**{**values, **changes})


def report(used_mb: int, applied_mb: int, minutes_ago: int) -> UsageReportView:
    end = NOW - timedelta(minutes=minutes_ago)
    return UsageReportView(
        report_id=uuid.uuid4(), used_mb=used_mb, applied_mb=applied_mb,
        overage_mb=used_mb - applied_mb, period_start=end - timedelta(seconds=10),
        period_end=end, received_at=end, cycle_order_id=ORDER,
    )  # fmt: skip


def alert(name: str, kind: str, used_mb: int, remaining_mb: int) -> AlertView:
    return AlertView(
        alert=name, kind=kind, cycle_order_id=ORDER, raised_at=NOW, event_id=uuid.uuid4(),
        data_used_mb=used_mb, data_remaining_mb=remaining_mb, overage_mb=0,
        valid_until=NOW + timedelta(days=7),
    )  # fmt: skip


def settings(iccid: str, status: str, **changes: Any) -> AutoRenewalView:
    values: dict[str, Any] = {
        "iccid": iccid, "status": status, "alert": "data_used_90", "package_id": "eu-1gb-7d",
        "currency": "EUR", "payment_method": "card", "payment_token": "****4242",
        "msisdn": "+44********23", "email": "t***@example.com", "paused_reason": None,
        "paused_message": None, "updated_at": NOW, "renewal_orders": [],
    }  # fmt: skip
    return AutoRenewalView(**{**values, **changes})


def renewal_order(iccid: str, attempt: int, status: str, **changes: Any) -> RenewalOrderView:
    request_id = f"autorenew:{iccid}:{ORDER}:data_used_90:{attempt}"
    values: dict[str, Any] = {
        "request_id": request_id, "order_id": uuid.uuid4(), "alert": "data_used_90",
        "attempt": attempt, "status": status, "due_at": None, "failure_reason": None,
        "failure_message": None, "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip
    return RenewalOrderView(**{**values, **changes})


# --- topup line usage -----------------------------------------------------------------


def test_line_usage_shows_the_cycle_and_the_latest_reports(
    provisioning: FakeProvisioning,
) -> None:
    iccid = random_iccid()
    reports = [report(300, 224, minutes_ago=1), report(500, 500, minutes_ago=2)]
    provisioning.answer(
        "GET",
        f"/lines/{iccid}/usage",
        200,
        UsageView(iccid=iccid, cycle=cycle(overage_mb=76), reports=reports),
    )

    output = succeeded(topup("line", "usage", iccid))

    assert f"line {iccid}, package cycle of order {ORDER}" in output
    assert "since 2026-11-24 17:16:05, valid until 2026-12-01 17:21:05" in output
    assert "quota 1024 MB, used 800 MB (78.1%), 224 MB left, overage 76 MB" in output
    assert rows(output) == [
        ["2026-11-24 17:19:55 - 17:20:05", "300 MB", "224 MB", "76 MB", "2026-11-24 17:20:05"],
        ["2026-11-24 17:18:55 - 17:19:05", "500 MB", "500 MB", "0 MB", "2026-11-24 17:19:05"],
    ]


def test_line_usage_of_a_line_topped_up_but_not_yet_used_says_so(
    provisioning: FakeProvisioning,
) -> None:
    iccid = random_iccid()
    fresh = cycle(used_mb=0, remaining_mb=1024, percent_used=0.0)
    provisioning.answer(
        "GET", f"/lines/{iccid}/usage", 200, UsageView(iccid=iccid, cycle=fresh, reports=[])
    )

    output = succeeded(topup("line", "usage", iccid))

    assert "used 0 MB (0.0%), 1024 MB left" in output
    assert "no usage reported yet" in output


def test_line_usage_of_a_line_without_a_cycle_says_so(provisioning: FakeProvisioning) -> None:
    iccid = random_iccid()
    provisioning.answer(
        "GET", f"/lines/{iccid}/usage", 200, UsageView(iccid=iccid, cycle=None, reports=[])
    )

    assert f"line {iccid}: no package cycle yet" in succeeded(topup("line", "usage", iccid))


def test_line_usage_of_a_line_never_topped_up_is_a_one_line_error(
    provisioning: FakeProvisioning,
) -> None:
    iccid = random_iccid()
    detail = {"detail": f"no line {iccid}: it was never topped up"}
    provisioning.answer("GET", f"/lines/{iccid}/usage", 404, detail)

    output = failed_in_one_line(topup("line", "usage", iccid))

    assert output == f"error: no line {iccid}: it was never topped up (HTTP 404)\n"


def test_line_usage_of_something_that_is_not_an_iccid_is_a_one_line_error(
    provisioning: FakeProvisioning,
) -> None:
    detail = {"detail": "'123' is not an ICCID: 19-20 digits starting 89, the last a Luhn check"}
    provisioning.answer("GET", "/lines/123/usage", 422, detail)

    assert "'123' is not an ICCID" in failed_in_one_line(topup("line", "usage", "123"))


def test_a_provisioning_that_does_not_answer_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(provisioning_api, "transport", httpx.MockTransport(refuse))
    monkeypatch.setenv("PROVISIONING_URL", "http://127.0.0.1:1")

    output = failed_in_one_line(topup("line", "usage", random_iccid()))

    assert "cannot reach provisioning at http://127.0.0.1:1" in output
    assert "is it running (`make run`)?" in output


# --- topup line alerts ----------------------------------------------------------------


def test_line_alerts_lists_each_alert_raised_newest_first(provisioning: FakeProvisioning) -> None:
    iccid = random_iccid()
    alerts = [
        alert("data_used_90", "data_used", 930, 94),
        alert("data_used_75", "data_used", 800, 224),
    ]
    provisioning.answer("GET", f"/lines/{iccid}/alerts", 200, alerts)

    output = succeeded(topup("line", "alerts", iccid))

    assert rows(output) == [
        ["2026-11-24 17:21:05", "data_used_90", "930 MB", "94 MB", "0 MB", "2026-12-01 17:21",
         str(ORDER)[:8]],
        ["2026-11-24 17:21:05", "data_used_75", "800 MB", "224 MB", "0 MB", "2026-12-01 17:21",
         str(ORDER)[:8]],
    ]  # fmt: skip


def test_line_alerts_of_a_line_that_raised_none_says_so(provisioning: FakeProvisioning) -> None:
    iccid = random_iccid()
    provisioning.answer("GET", f"/lines/{iccid}/alerts", 200, [])

    assert f"line {iccid}: no alerts yet" in succeeded(topup("line", "alerts", iccid))


# --- topup line auto-renew ------------------------------------------------------------


def test_auto_renew_opts_in_with_a_request_provisioning_accepts(
    provisioning: FakeProvisioning,
) -> None:
    iccid = random_iccid()
    path = f"/lines/{iccid}/auto-renewal"
    provisioning.answer("PUT", path, 200, settings(iccid, "active"))

    output = succeeded(
        topup(
            "line", "auto-renew", iccid, "--package", "eu-1gb-7d", "--when", "data_used_90",
            "--token", "tok_visa_4242", "--msisdn", "+447700900123", "--email", "t@example.com",
        )
    )  # fmt: skip

    [sent] = provisioning.requests
    assert sent.method == "PUT"
    request = AutoRenewalRequest.model_validate(json.loads(sent.content))
    assert request.model_dump() == {
        "alert": "data_used_90", "package_id": "eu-1gb-7d", "currency": "EUR",
        "payment_method": "card", "payment_token": "tok_visa_4242",
        "msisdn": "+447700900123", "email": "t@example.com",
    }  # fmt: skip
    assert f"auto-renewal of {iccid}: ACTIVE" in output
    assert "renews with eu-1gb-7d (EUR, card ****4242) when data_used_90 is raised" in output


def test_auto_renew_off_opts_out(provisioning: FakeProvisioning) -> None:
    iccid = random_iccid()
    provisioning.answer("DELETE", f"/lines/{iccid}/auto-renewal", 200, settings(iccid, "off"))

    output = succeeded(topup("line", "auto-renew", iccid, "--off"))

    assert [r.method for r in provisioning.requests] == ["DELETE"]
    assert output.strip() == f"auto-renewal of {iccid}: OFF"


def test_auto_renew_shows_a_paused_one_with_why_and_its_renewal_orders(
    provisioning: FakeProvisioning,
) -> None:
    iccid = random_iccid()
    orders = [
        renewal_order(iccid, 2, "failed", failure_reason="payment_declined"),
        renewal_order(iccid, 1, "failed", failure_reason="payment_declined"),
    ]
    paused = settings(
        iccid, "paused", paused_reason="retries_exhausted",
        paused_message="2 renewal orders failed; the last: payment_declined",
        renewal_orders=orders,
    )  # fmt: skip
    provisioning.answer("GET", f"/lines/{iccid}/auto-renewal", 200, paused)

    output = succeeded(topup("line", "auto-renew", iccid))

    assert [r.method for r in provisioning.requests] == ["GET"]
    assert f"auto-renewal of {iccid}: PAUSED" in output
    assert "paused (retries_exhausted):\n    2 renewal orders failed; the last: payment_" in output
    assert rows(output) == [
        ["2026-11-24 17:21:05", "2", str(orders[0].order_id), "failed: payment_declined"],
        ["2026-11-24 17:21:05", "1", str(orders[1].order_id), "failed: payment_declined"],
    ]


def test_auto_renew_shows_when_a_declined_renewal_is_tried_again(
    provisioning: FakeProvisioning,
) -> None:
    iccid = random_iccid()
    retry = renewal_order(iccid, 2, "due", due_at=NOW + timedelta(minutes=10))
    provisioning.answer(
        "GET",
        f"/lines/{iccid}/auto-renewal",
        200,
        settings(iccid, "active", renewal_orders=[retry]),
    )

    output = succeeded(topup("line", "auto-renew", iccid))

    assert rows(output) == [["2026-11-24 17:21:05", "2", str(retry.order_id), "due 17:31:05"]]


def test_a_refused_setting_names_the_field_and_why_in_one_line(
    provisioning: FakeProvisioning,
) -> None:
    iccid = random_iccid()
    refusal = {
        "detail": [
            {
                "type": "value_error",
                "loc": ["body", "payment_token"],
                "msg": "Value error, send the payment provider's token, never a card number",
            }
        ]
    }
    provisioning.answer("PUT", f"/lines/{iccid}/auto-renewal", 422, refusal)

    result = topup(
        "line", "auto-renew", iccid, "--package", "eu-1gb-7d", "--token", "4242424242424242"
    )

    assert failed_in_one_line(result) == (
        "error: payment_token: send the payment provider's token, never a card number (HTTP 422)\n"
    )


def test_off_and_package_together_are_refused_before_asking_provisioning(
    provisioning: FakeProvisioning,
) -> None:
    result = topup("line", "auto-renew", random_iccid(), "--off", "--package", "eu-1gb-7d")

    assert result.exit_code == 2, result.output
    assert provisioning.requests == []
