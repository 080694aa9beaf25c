"""Structured output: an answer asked for as JSON (``response_format``) is checked
here before it is served; one that is not what was asked is never served as valid.

The schema is checked with ``jsonschema`` (Draft 2020-12, as OpenAI's structured
outputs take it), each distinct schema compiled once (an LRU of 256).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema
import msgspec

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


def invalid_output(form: ResponseFormat | None, content: str) -> str | None:
    """Why ``content`` is not the JSON the request asked for, or None (also None when
    it asked for text)."""
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
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(the top)"
    return (
        f"the answer does not follow schema {form.json_schema.name!r}: {error.message} at {where}"
    )


@lru_cache(maxsize=256)
def _validator(schema: bytes) -> Any:
    """A validator of one schema (its JSON text is the cache key); ``SchemaError``."""
    loaded = json.loads(schema)
    cls = jsonschema.validators.validator_for(loaded, default=jsonschema.Draft202012Validator)
    cls.check_schema(loaded)
    return cls(loaded)
