"""YAML <-> model. Loading reports every problem with its location; dumping is canonical.

Names are loaded on first use (PEP 562): reading a policy needs neither the dumper (ruamel)
nor the JSON Schema export, so `microseg compile FILE` never imports them (bench/cli_compile.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from microseg.policyfile.dumper import dump_policy, object_document, policy_document
    from microseg.policyfile.loader import (
        PolicySource,
        SourceObject,
        build_policy,
        collection_members,
        load_policy,
        load_policy_text,
        policy_files,
        read_policy_source,
        read_policy_source_text,
        standalone_policies,
    )
    from microseg.policyfile.schema import policy_schema, policy_schema_json

_MODULES = {
    "dump_policy": "dumper",
    "object_document": "dumper",
    "policy_document": "dumper",
    "policy_schema": "schema",
    "policy_schema_json": "schema",
}

__all__ = [
    "PolicySource",
    "SourceObject",
    "build_policy",
    "collection_members",
    "dump_policy",
    "load_policy",
    "load_policy_text",
    "object_document",
    "policy_document",
    "policy_files",
    "policy_schema",
    "policy_schema_json",
    "read_policy_source",
    "read_policy_source_text",
    "standalone_policies",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_MODULES.get(name, 'loader')}")
    value = getattr(module, name)
    globals()[name] = value
    return value
