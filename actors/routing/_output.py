"""Structured output: an answer asked for as JSON (``response_format``) is checked
here before it is served; one that is not what was asked is never served as valid.

The schema is checked with ``jsonschema`` (Draft 2020-12, as OpenAI's structured
outputs take it), each distinct schema compiled once (an LRU of 256). The request's
own regular expressions (``pattern``, ``patternProperties``) run on the answer with
``regex`` and a time budget for the whole check: a pattern that backtracks forever
(``(a+)+$``) on an answer made to defeat it fails the check instead of holding the
router's event loop (Python's ``re`` cannot be stopped).
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import jsonschema
import msgspec
import regex  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError

from ..providers import ResponseFormat

__all__ = ["invalid_output", "invalid_schema"]


def invalid_schema(form: ResponseFormat | None) -> str | None:
    """Why the request's schema is not a JSON Schema, or None."""
    if form is None or form.json_schema is None:
        return None
    try:
        _validator(msgspec.json.encode(form.json_schema.schema))
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return (f"response_format: json_schema.schema is not a valid JSON Schema: "
                f"{exc.message}" + (f" (at {where})" if where else ""))  # fmt: skip
    return None


def invalid_output(form: ResponseFormat | None, content: str, budget_s: float = 0.25) -> str | None:
    """Why ``content`` is not the JSON the request asked for, or None (also None when
    it asked for text). ``budget_s``: the time the schema's regular expressions may
    take together; past it the answer fails the check."""
    if form is None or form.type == "text":
        return None
    try:
        value = json.loads(content)
    except ValueError as exc:
        return f"the answer is not JSON ({exc})"
    if not isinstance(value, dict):
        return f"the answer is JSON but not an object ({type(value).__name__})"
    if form.json_schema is None:
        return None
    validator = _validator(msgspec.json.encode(form.json_schema.schema))
    token = _deadline.set(time.monotonic() + budget_s)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    finally:
        _deadline.reset(token)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(the top)"
    return (
        f"the answer does not follow schema {form.json_schema.name!r}: {error.message} at {where}"
    )


_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("deadline", default=0.0)


class _TooSlow(Exception):
    pass


def _search(pattern: str, text: str) -> bool:
    left = _deadline.get() - time.monotonic()
    if left <= 0:
        raise _TooSlow
    try:
        return regex.search(pattern, text, timeout=left) is not None
    except TimeoutError:
        raise _TooSlow from None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "string"):
        return
    try:
        found = _search(pattern, instance)
    except _TooSlow:
        yield ValidationError(f"pattern {pattern!r} could not be checked in time")
        return
    if not found:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            try:
                matched = _search(pattern, key)
            except _TooSlow:
                yield ValidationError(f"pattern {pattern!r} could not be checked in time")
                return
            if matched:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, allowed: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = []
    for key in instance:
        if key in named:
            continue
        try:
            if any(_search(p, key) for p in patterns):
                continue
        except _TooSlow:
            yield ValidationError("patternProperties could not be checked in time")
            return
        extras.append(key)
    if validator.is_type(allowed, "object"):
        for key in extras:
            yield from validator.descend(instance[key], allowed, path=key)
    elif allowed is False and extras:
        shown = ", ".join(repr(k) for k in sorted(extras))
        yield ValidationError(f"additional properties are not allowed ({shown})")


_OURS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}


@lru_cache(maxsize=256)
def _validator(schema: bytes) -> Any:
    """A validator of one schema (its JSON text is the cache key); ``SchemaError``."""
    loaded = json.loads(schema)
    cls = jsonschema.validators.validator_for(loaded, default=jsonschema.Draft202012Validator)
    cls.check_schema(loaded)
    return jsonschema.validators.extend(cls, _OURS)(loaded)  # type: ignore[no-untyped-call]
