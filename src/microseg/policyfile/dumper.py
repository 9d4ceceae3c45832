"""PolicySet -> canonical YAML. load -> dump -> load -> dump is byte-identical.

Canonical form: sections in a fixed order, objects sorted by name (byte order), fields in
model order, defaults left out except the fields a reviewer must always see.
"""

from __future__ import annotations

import io
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.representer import SafeRepresenter

from microseg.model import SECTIONS, PolicySet
from microseg.policyfile.located import plain_is_string

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


class _Representer(SafeRepresenter):
    """ruamel writes YAML 1.2, where `yes` and `on` are plain strings; policy files are read
    with PyYAML's YAML 1.1 types, where they are booleans. A string that would read back as
    another type is single-quoted, so what is written loads as written."""

    def represent_str(self, data: str) -> Any:
        if not plain_is_string(data):
            return self.represent_scalar("tag:yaml.org,2002:str", data, style="'")
        return super().represent_str(data)


_Representer.add_representer(str, _Representer.represent_str)


def dump_policy(policy_set: PolicySet) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.Representer = _Representer
    yaml.default_flow_style = False
    # ruamel.yaml's YAML.__init__ sets this None, so its inferred type is None; it takes a bool.
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    stream = io.StringIO()
    yaml.dump(policy_document(policy_set), stream)
    return stream.getvalue()
