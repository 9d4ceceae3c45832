"""YAML <-> model. Loading reports every problem with its location; dumping is canonical."""

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
