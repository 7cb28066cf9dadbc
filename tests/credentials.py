"""The callers every test process and every service it starts knows (set in the
environment by tests/conftest.py): an internal system that reads, one that also manages
auto-renewal, and an operator. Tokens are new for each test session."""

from __future__ import annotations

import secrets
from typing import Final


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


STOREFRONT_TOKEN: Final = f"storefront-{secrets.token_urlsafe(16)}"
CARE_TOKEN: Final = f"care-{secrets.token_urlsafe(16)}"
OPS_TOKEN: Final = f"ops-{secrets.token_urlsafe(16)}"

ENVIRONMENT: Final = {
    "API_TOKENS": f"storefront:read={STOREFRONT_TOKEN},care:read+auto-renewal={CARE_TOKEN}",
    "OPERATOR_TOKENS": f"ops={OPS_TOKEN}",
}

READER: Final = bearer(STOREFRONT_TOKEN)  # scope read
RENEWER: Final = bearer(CARE_TOKEN)  # scopes read, auto-renewal
OPERATOR: Final = bearer(OPS_TOKEN)  # an operator: read, operate
