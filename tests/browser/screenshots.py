"""Screenshots of the dashboard as the tests see it, for people to look at afterwards."""

from __future__ import annotations

from playwright.async_api import Page

from deploy.local.kafka import REPO_ROOT

SCREENSHOTS = REPO_ROOT / "test-results" / "browser"


async def screenshot(page: Page, name: str, panel: str | None = None) -> None:
    """test-results/browser/<name>.png: the whole page, or one panel of it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if panel is None:
        await page.screenshot(path=path, full_page=True)
    else:
        await page.get_by_test_id(f"panel-{panel}").screenshot(path=path)
