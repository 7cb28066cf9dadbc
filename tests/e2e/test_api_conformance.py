"""Every HTTP API answers as its OpenAPI document says, whoever calls and whatever they
send: schemathesis generates requests from each service's own /openapi.json (valid ones
and ones that break the schema), with an internal system's token, an operator's and none,
against the service processes on PostgreSQL and on SQLite, and checks each answer: no server error,
only documented status codes, bodies, content types and headers as declared, a request
that breaks the schema refused, a token required. Left out: that every schema-valid
request is accepted (a 2xx): the catalog, the configured alerts and an email's domain
are rules a JSON schema does not state, and their refusals are documented 422s.

`make test` runs API_EXAMPLES (default 15) examples per operation and mode; `make
test-api` runs 300.
"""

from __future__ import annotations

import json
import os
from typing import Any, Final

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from deploy.local.processes import OPERATOR, ServiceProcess
from shared.http_guard import MAX_BODY_BYTES
from tests.credentials import OPS_TOKEN, RENEWER

Services = dict[str, ServiceProcess]

pytestmark = pytest.mark.e2e

EXAMPLES: Final = int(os.environ.get("API_EXAMPLES", "15"))
CALLERS: Final = {
    "an internal system": RENEWER,
    "an operator": {"Authorization": f"Bearer {OPS_TOKEN}"},
    "nobody": {},
}


def within_bounds(case: Any) -> bool:
    """Bodies the guard reads at all: a larger one is a 413 whatever it holds, before any
    schema is looked at (shared/http_guard.py; test_no_leaks.py sends those)."""
    return len(json.dumps(case.body, default=str).encode()) <= MAX_BODY_BYTES


def conformance_failures(base_url: str, headers: dict[str, str]) -> list[str]:
    """Run every operation of the API at `base_url`; each failure in words."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid document: raises
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode).filter(within_bounds))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
            )
            def calls(case: Any) -> None:
                # A case that leaves the token out on purpose is sent without ours.
                unsigned = schema.is_security_param_negated(case)
                case.call_and_validate(
                    base_url=base_url,
                    headers={} if unsigned else headers,
                    excluded_checks=[positive_data_acceptance],
                )

            try:
                calls()
            except Unsatisfiable:
                continue  # nothing to break: an operation without parameters or a body
            except (Exception, BaseExceptionGroup) as error:  # each reported; all tried
                failures.append(f"{operation.label} ({mode.value}): {_words(error)}"[:4000])
    return failures


def _words(error: BaseException) -> str:
    """What failed, with what a group (Hypothesis' flaky report) holds."""
    if isinstance(error, BaseExceptionGroup):
        return f"{error}: " + " | ".join(_words(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_every_service_answers_as_its_api_document_says(
    services: Services, operator: ServiceProcess, caller: str
) -> None:
    apis = {**services, OPERATOR: operator}
    failures = {
        name: conformance_failures(process.base_url, CALLERS[caller])
        for name, process in apis.items()
    }
    found = [f"{name}: {failure}" for name, listed in failures.items() for failure in listed]
    assert not found, "\n\n".join(found)
