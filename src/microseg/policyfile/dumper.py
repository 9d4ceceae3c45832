"""PolicySet -> canonical YAML. load -> dump -> load -> dump is byte-identical.

Canonical form: sections in a fixed order, objects sorted by name (byte order), fields in
model order, defaults left out except the fields a reviewer must always see.
"""

from __future__ import annotations

import io
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML

from microseg.model import SECTIONS, PolicySet

# Fields written even when they hold their default: a rule's reach and verdict.
ALWAYS_WRITTEN: dict[str, tuple[str, ...]] = {
    "rules": ("sources", "destinations", "services", "direction", "action"),
    "policies": ("vrf",),
    "devices": ("platform",),
}


def object_document(section: str, obj: BaseModel) -> dict[str, Any]:
    """One object as the plain mapping the policy file holds."""
    full = obj.model_dump(mode="json")
    lean = obj.model_dump(mode="json", exclude_defaults=True)
    always = ALWAYS_WRITTEN.get(section, ())
    return {
        key: lean.get(key, value) for key, value in full.items() if key in lean or key in always
    }


def policy_document(policy_set: PolicySet) -> dict[str, list[dict[str, Any]]]:
    document: dict[str, list[dict[str, Any]]] = {}
    for section in SECTIONS:
        objects = sorted(getattr(policy_set, section), key=lambda o: o.name.encode())
        if objects:
            document[section] = [object_document(section, obj) for obj in objects]
    return document


def dump_policy(policy_set: PolicySet) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    # ruamel.yaml's YAML.__init__ sets this None, so its inferred type is None; it takes a bool.
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    stream = io.StringIO()
    yaml.dump(policy_document(policy_set), stream)
    return stream.getvalue()
