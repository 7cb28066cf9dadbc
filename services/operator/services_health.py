"""The three services' own /health, side by side, for the dashboard's Services panel:
each one's status (ok, degraded, unavailable, or unreachable) and, when degraded, its
problems in words (a stuck partition, a failing relay, parked outbox rows)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from shared.logs import mask

PROBLEM_CHARS = 300
PROBLEMS_SHOWN = 10


async def services_health(http: httpx.AsyncClient, urls: dict[str, str]) -> dict[str, Any]:
    """Asked of every service at once; one entry per service, in the order given."""
    answers = await asyncio.gather(*(_health(http, name, url) for name, url in urls.items()))
    return {"services": list(answers)}


async def _health(http: httpx.AsyncClient, name: str, url: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"service": name, "url": url, "problems": []}
    try:
        response = await http.get(f"{url}/health", timeout=3)
        body = response.json()
    except (httpx.HTTPError, ValueError) as error:
        return {**entry, "status": "unreachable", "problems": [type(error).__name__]}
    if not isinstance(body, dict):
        return {**entry, "status": "unreachable", "problems": ["not a health answer"]}
    checks = body.get("checks") or {}
    problems = [
        str(problem)[:PROBLEM_CHARS]
        for problem in (checks.get("progress") or {}).get("problems", [])[:PROBLEMS_SHOWN]
    ]
    problems += [
        f"{part}: {check.get('error', 'down')}"[:PROBLEM_CHARS]
        for part, check in checks.items()
        if part != "progress" and isinstance(check, dict) and not check.get("ok")
    ]
    return {
        **entry,
        "status": str(body.get("status", "?"))[:20],
        "problems": [mask(p) for p in problems],
    }
