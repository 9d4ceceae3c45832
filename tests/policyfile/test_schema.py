"""The JSON Schema editors read says what the loader accepts."""

from __future__ import annotations

import json

from microseg.policyfile.schema import policy_schema, policy_schema_json


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_bounds_are_json_schema_keywords_not_pydantic_ones():
    # A validator placed before `Field(ge=...)` leaks `ge`/`le`/`lt`, which editors ignore.
    assert _keys(policy_schema()) & {"ge", "gt", "le", "lt"} == set()
    device = policy_schema()["$defs"]["Device"]["properties"]["monitor_tunnel"]
    assert {"minimum": 0, "exclusiveMaximum": 256, "type": "integer"} in device["anyOf"]


def test_a_rule_must_name_its_reach_and_a_rate_has_a_unit():
    definitions = json.loads(policy_schema_json())["$defs"]
    assert definitions["Rule"]["required"] == ["name", "sources", "destinations", "services"]
    assert definitions["Rule"]["properties"]["sources"]["anyOf"][1]["minItems"] == 1
    rate = definitions["MonitorObject"]["properties"]["rate_limit"]
    assert (rate["type"], rate["default"]) == ("string", "100000 kbps")
    assert definitions["Policy"]["properties"]["default_action"]["enum"] == ["forward", "drop"]
