"""The structured output check itself: schemas, and regular expressions that would
backtrack forever on an answer made to defeat them."""

from __future__ import annotations

import json
from typing import Any

from actors.providers import JsonSchemaFormat, ResponseFormat
from actors.routing._output import invalid_output, invalid_schema


def _form(schema: dict[str, Any]) -> ResponseFormat:
    return ResponseFormat(type="json_schema", json_schema=JsonSchemaFormat(name="s", schema=schema))


def test_patterns_and_properties_are_checked() -> None:
    form = _form({
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[0-9]{3}$"}},
        "patternProperties": {"^x-": {"type": "integer"}},
        "additionalProperties": False,
        "required": ["code"],
    })  # fmt: skip
    assert invalid_output(form, json.dumps({"code": "123", "x-a": 1})) is None
    assert "does not match" in (invalid_output(form, json.dumps({"code": "12"})) or "")
    assert invalid_output(form, json.dumps({"code": "123", "x-a": "one"})) is not None
    wrong = invalid_output(form, json.dumps({"code": "123", "other": 1})) or ""
    assert "additional properties" in wrong and "'other'" in wrong
    assert invalid_output(ResponseFormat(type="json_object"), "[1]") is not None
    assert invalid_output(ResponseFormat(type="json_object"), "not json") is not None


def test_a_pattern_that_backtracks_forever_fails_the_check_instead_of_hanging() -> None:
    """Whether the engine sees through the pattern or runs out of its budget, the
    check ends and the answer does not pass."""
    evil = _form({"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}})
    answer = json.dumps({"s": "a" * 5_000 + "!"})
    assert invalid_output(evil, answer) is not None
    keys = _form({"type": "object", "patternProperties": {"^(a|aa)+$": {}},
                  "additionalProperties": False})  # fmt: skip
    assert invalid_output(keys, json.dumps({"a" * 5_000 + "!": 1})) is not None


def test_past_its_budget_the_check_fails_naming_why() -> None:
    plain = _form({"type": "object", "properties": {"s": {"type": "string", "pattern": "^a"}},
                   "patternProperties": {"^x": {}}})  # fmt: skip
    assert invalid_output(plain, json.dumps({"s": "abc"})) is None
    late = invalid_output(plain, json.dumps({"s": "abc"}), budget_s=0) or ""
    assert "could not be checked in time" in late
    late = invalid_output(plain, json.dumps({"x1": 1}), budget_s=0) or ""
    assert "could not be checked in time" in late


def test_a_schema_that_is_no_schema_is_named() -> None:
    assert "not a valid JSON Schema" in (invalid_schema(_form({"type": "nope"})) or "")
    assert invalid_schema(_form({"type": "object"})) is None
