"""JSON Schema of a policy file, for editors (yaml-language-server, VS Code)."""

from __future__ import annotations

import json

from microseg.model import PolicySet


def policy_schema() -> dict:
    schema = PolicySet.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "microseg policy file"
    return schema


def policy_schema_json() -> str:
    return json.dumps(policy_schema(), indent=2, sort_keys=True) + "\n"
