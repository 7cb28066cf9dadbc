"""The whole system as an operator meets it: the three services and the operator service
as processes on the real broker (SQLite databases in a temporary folder, the payment
provider and the carrier simulated, processes of their own), real traffic through them,
and a headless Chromium.

One stack serves every test of this folder (the dashboard's and the command line's);
each test makes the orders and dead letters it looks at, with ids of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from deploy.local.kafka import free_port
from deploy.local.processes import (
    SERVICES,
    ServiceProcess,
    running,
    service_process,
    simulator_processes,
)
from shared.kafka_access import CARRIER
from tests.browser.stack import Stack, Traffic, drive_traffic
from tests.e2e.conftest import SIMULATION
from tests.infra import KafkaUnderTest

OPERATOR = "alice"
STUCK_AFTER_S = 2
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

expect.set_options(timeout=30_000)  # the panels refresh every 2 s; the saga takes its time


@pytest.fixture(scope="package")
async def stack(
    kafka: KafkaUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp("operator-stack")
    token = f"tok-{uuid.uuid4().hex}"
    # Orders answers the operator's saga overview with the operator's own token.
    access = {"OPERATOR_TOKENS": f"{OPERATOR}={token},bob=tok-{uuid.uuid4().hex}"}
    services = {
        name: service_process(
            name,
            kafka.bootstrap_servers,
            f"sqlite+aiosqlite:///{folder / name}.db",
            # A payment left pending stays so: the stuck saga the dashboard must show.
            {**SIMULATION, **access, "PAYMENT_TIMEOUT_S": "3600", "PARTITION_STUCK_AFTER_S": "2"}
            | kafka.env(name),
            folder / f"{name}.log",
        )
        for name in SERVICES
    }
    simulators = simulator_processes(
        {name: [process] for name, process in services.items()},
        None,  # an SQLite file each, in the folder
        SIMULATION,
        folder,
        kafka.env(CARRIER),
    )
    operator = ServiceProcess(
        "operator",
        free_port(),
        env={
            **kafka.env("operator"),
            **{f"{name.upper()}_URL": service.base_url for name, service in services.items()},
            **access,
            "STUCK_AFTER_S": str(STUCK_AFTER_S),
        },
        log_path=folder / "operator.log",
    )
    with running([*simulators, *services.values(), operator]):
        yield Stack(kafka, services, operator, OPERATOR, token)


@pytest.fixture(scope="package")
async def traffic(stack: Stack) -> Traffic:
    """Completed orders, one stuck order and one dead letter, all of them arrived."""
    return await drive_traffic(stack)


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


@pytest.fixture
async def signed_in(page: Page, stack: Stack, traffic: Traffic) -> Page:
    """The dashboard opened with the link `make run` prints, the operator signed in."""
    await page.goto(f"{stack.operator.base_url}/#token={stack.token}")
    await expect(page.get_by_test_id("operator")).to_have_text(f"signed in as {stack.name}")
    return page
