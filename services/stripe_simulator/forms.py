"""Stripe's request encoding: form fields with bracketed paths (`metadata[order_id]`,
`payment_method_types[0]`), decoded into the nested values they stand for."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

MAX_FIELDS: Final = 100
_PART = re.compile(r"\[([^\[\]]*)\]")


def decode(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][0]=x` -> {"a": {"b": ["x"]}}; list indices become list positions."""
    if len(pairs) > MAX_FIELDS:
        raise ValueError(f"at most {MAX_FIELDS} parameters")
    root: dict[str, Any] = {}
    for name, value in pairs:
        head, _, rest = name.partition("[")
        path = [head, *_PART.findall("[" + rest)] if rest else [head]
        node: dict[str, Any] = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name}: mixes a value and a hash")
        node[path[-1]] = value
    decoded: dict[str, Any] = _lists(root)
    return decoded


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    values = {key: _lists(value) for key, value in node.items()}
    if values and all(key.isdigit() or key == "" for key in values):
        return [values[key] for key in sorted(values, key=lambda k: int(k or 0))]
    return values


def digest(method: str, path: str, pairs: list[tuple[str, str]]) -> str:
    """What makes two requests the same request (Stripe compares the parameters)."""
    text = "\n".join([method, path, *sorted(f"{k}={v}" for k, v in pairs)])
    return hashlib.sha256(text.encode()).hexdigest()
