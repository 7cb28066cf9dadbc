"""Is a change to the contract additive? Plain functions over JSON schemas.

The rule (docs/contract.md): a change is additive when every message valid under the
old schema is still valid under the new one, and every field a reader of the old
schema relies on is still there, with the same meaning. So these are additive:
a new optional field, a new message type on a topic, a new enum value, a field that
becomes optional or also accepts another type (e.g. null), a relaxed constraint.
And these are breaking: a removed or renamed field, a changed type, a new required
field, a field that becomes required, a removed message type or enum value, a
tightened constraint (a new or stricter bound, pattern or format), a changed default
or constant.

Titles, descriptions and examples are documentation, never a compatibility matter.

A topic's snapshot (tests/contract/snapshots/<topic>.json) holds the schemas of its
Kafka key, its headers and each message it carries (self-contained, with `$defs`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Schema = Mapping[str, Any]

# A bigger value of a lower bound (or a smaller one of an upper bound) accepts less.
_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
# Any new or different value of these accepts less; removing them accepts more.
_EXACT = ("pattern", "format", "multipleOf", "contentEncoding")
_DOCUMENTATION = frozenset({"title", "description", "examples", "deprecated", "$comment"})


@dataclass(frozen=True)
class Change:
    path: str
    kind: str
    breaking: bool
    detail: str = ""

    def __str__(self) -> str:
        label = "BREAKING" if self.breaking else "additive"
        detail = f" ({self.detail})" if self.detail else ""
        return f"{label}: {self.kind} at {self.path}{detail}"


def breaking(changes: list[Change]) -> list[Change]:
    return [change for change in changes if change.breaking]


def compare_snapshots(old: Schema, new: Schema) -> list[Change]:
    """The changes from one snapshot of a topic to the next."""
    topic = str(new.get("topic", old.get("topic", "")))
    changes: list[Change] = []
    for part in ("key", "headers"):
        if part in old or part in new:
            changes += compare_schemas(old.get(part, {}), new.get(part, {}), f"{topic} {part}")
    old_messages, new_messages = old.get("messages", {}), new.get("messages", {})
    for name in sorted(old_messages.keys() - new_messages.keys()):
        changes.append(Change(f"{topic} {name}", "removed message type", breaking=True))
    for name in sorted(new_messages.keys() - old_messages.keys()):
        changes.append(Change(f"{topic} {name}", "new message type", breaking=False))
    for name in sorted(old_messages.keys() & new_messages.keys()):
        changes += compare_schemas(old_messages[name], new_messages[name], f"{topic} {name}")
    return changes


def compare_schemas(old: Schema, new: Schema, path: str = "$") -> list[Change]:
    """The changes from `old` to `new`, two self-contained JSON schemas (refs in `$defs`)."""
    return list(_Comparison(old, new).node(old, new, path))


@dataclass
class _Comparison:
    old_root: Schema
    new_root: Schema

    def node(self, old: Schema, new: Schema, path: str) -> Iterator[Change]:
        old, new = _resolve(self.old_root, old), _resolve(self.new_root, new)
        old_alternatives, new_alternatives = _alternatives(old), _alternatives(new)
        if len(old_alternatives) > 1 or len(new_alternatives) > 1:
            yield from self.union(old_alternatives, new_alternatives, path)
            yield from _default(old, new, path)
            return
        yield from self.single(old, new, path)

    def union(self, old: list[Schema], new: list[Schema], path: str) -> Iterator[Change]:
        old_by_type = {_type_of(self.old_root, s): s for s in old}
        new_by_type = {_type_of(self.new_root, s): s for s in new}
        if "any" in new_by_type and "any" not in old_by_type:
            yield Change(path, "widened type", breaking=False, detail="now accepts anything")
            return
        for kind in sorted(old_by_type.keys() - new_by_type.keys()):
            yield Change(path, "changed type", breaking=True, detail=f"no longer accepts {kind}")
        for kind in sorted(new_by_type.keys() - old_by_type.keys()):
            yield Change(path, "widened type", breaking=False, detail=f"now also accepts {kind}")
        for kind in sorted(old_by_type.keys() & new_by_type.keys()):
            yield from self.node(old_by_type[kind], new_by_type[kind], path)

    def single(self, old: Schema, new: Schema, path: str) -> Iterator[Change]:
        old_type, new_type = _type_of(self.old_root, old), _type_of(self.new_root, new)
        if new_type == "any" and old_type != "any":
            yield Change(path, "widened type", breaking=False, detail="now accepts anything")
            return
        if old_type != new_type:
            yield Change(path, "changed type", breaking=True, detail=f"{old_type} -> {new_type}")
            return
        yield from _default(old, new, path)
        yield from _constant_and_enum(old, new, path)
        yield from _constraints(old, new, path)
        if old_type == "object":
            yield from self.object(old, new, path)
        if old_type == "array" and ("items" in old or "items" in new):
            yield from self.node(old.get("items", {}), new.get("items", {}), f"{path}[]")

    def object(self, old: Schema, new: Schema, path: str) -> Iterator[Change]:
        old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        removed = sorted(old_fields.keys() - new_fields.keys())
        added = sorted(new_fields.keys() - old_fields.keys())
        for name in removed:
            twin = next((a for a in added if self.same(old_fields[name], new_fields[a])), None)
            if twin is None:
                yield Change(f"{path}.{name}", "removed field", breaking=True)
            else:
                added.remove(twin)
                yield Change(f"{path}.{name}", "renamed field", breaking=True, detail=f"-> {twin}")
        for name in added:
            if name in new_required:
                yield Change(f"{path}.{name}", "new required field", breaking=True)
            else:
                yield Change(f"{path}.{name}", "new optional field", breaking=False)
        for name in sorted(old_fields.keys() & new_fields.keys()):
            where = f"{path}.{name}"
            if name in new_required and name not in old_required:
                yield Change(where, "field became required", breaking=True)
            if name in old_required and name not in new_required:
                yield Change(where, "field became optional", breaking=False)
            yield from self.node(old_fields[name], new_fields[name], where)
        yield from _extra_fields(old, new, path)

    def same(self, old: Schema, new: Schema) -> bool:
        """Whether a removed and an added field look alike: a rename, not a new field."""
        return _meaning(self.old_root, old) == _meaning(self.new_root, new)


def _resolve(root: Schema, schema: Schema) -> Schema:
    """`schema` with a local `$ref` replaced by its target (siblings win, as in 2020-12)."""
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are compared, not {ref}")
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    siblings = {k: v for k, v in schema.items() if k != "$ref"}
    return {**_resolve(root, target), **siblings}


def _alternatives(schema: Schema) -> list[Schema]:
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return list(schema[combinator])
    if isinstance(schema.get("type"), list):
        return [{**schema, "type": kind} for kind in schema["type"]]
    return [schema]


def _type_of(root: Schema, schema: Schema) -> str:
    resolved = _resolve(root, schema)
    kind = resolved.get("type")
    if isinstance(kind, str):
        return kind
    if "properties" in resolved:
        return "object"
    if "const" in resolved or "enum" in resolved:
        return "constant"
    return "any"


def _default(old: Schema, new: Schema, path: str) -> Iterator[Change]:
    if "default" in old and "default" in new and old["default"] != new["default"]:
        detail = f"{old['default']!r} -> {new['default']!r}"
        yield Change(path, "changed default", breaking=True, detail=detail)


def _constant_and_enum(old: Schema, new: Schema, path: str) -> Iterator[Change]:
    before, after = _values(old), _values(new)
    if before == after:
        return
    if after is None:
        yield Change(path, "relaxed constraint", breaking=False, detail="any value now")
    elif before is None:
        detail = f"only {sorted(after, key=repr)} now"
        yield Change(path, "tightened constraint", breaking=True, detail=detail)
    elif "const" in old and "const" in new:
        detail = f"{old['const']!r} -> {new['const']!r}"
        yield Change(path, "changed constant", breaking=True, detail=detail)
    else:
        for value in sorted(before - after, key=repr):
            yield Change(path, "removed enum value", breaking=True, detail=repr(value))
        for value in sorted(after - before, key=repr):
            yield Change(path, "new enum value", breaking=False, detail=repr(value))


def _values(schema: Schema) -> set[Any] | None:
    if "enum" in schema:
        return set(schema["enum"])
    if "const" in schema:
        return {schema["const"]}
    return None


def _constraints(old: Schema, new: Schema, path: str) -> Iterator[Change]:
    for keyword in (*_LOWER_BOUNDS, *_UPPER_BOUNDS, *_EXACT):
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        detail = f"{keyword} {before!r} -> {after!r}"
        relaxed = after is None or (
            before is not None
            and (after < before if keyword in _LOWER_BOUNDS else after > before)
            and keyword not in _EXACT
        )
        if relaxed:
            yield Change(path, "relaxed constraint", breaking=False, detail=detail)
        else:
            yield Change(path, "tightened constraint", breaking=True, detail=detail)


def _extra_fields(old: Schema, new: Schema, path: str) -> Iterator[Change]:
    """Unknown fields are ignored by our readers (extra="ignore"); forbidding them breaks."""
    before, after = old.get("additionalProperties", True), new.get("additionalProperties", True)
    if before is not False and after is False:
        detail = "unknown fields now refused"
        yield Change(path, "tightened constraint", breaking=True, detail=detail)
    if before is False and after is not False:
        detail = "unknown fields now accepted"
        yield Change(path, "relaxed constraint", breaking=False, detail=detail)


def _meaning(root: Schema, schema: Schema) -> dict[str, Any]:
    """`schema` resolved and without its documentation, to compare two fields' shapes."""
    meaning: dict[str, Any] = {}
    for key, value in sorted(_resolve(root, schema).items()):
        if key in _DOCUMENTATION:
            continue
        if key in ("properties", "$defs"):  # names, not keywords: keep every one
            meaning[key] = {name: _meaning(root, field) for name, field in sorted(value.items())}
        elif isinstance(value, Mapping):
            meaning[key] = _meaning(root, value)
        elif isinstance(value, list):
            meaning[key] = [_meaning(root, v) if isinstance(v, Mapping) else v for v in value]
        else:
            meaning[key] = value
    return meaning
