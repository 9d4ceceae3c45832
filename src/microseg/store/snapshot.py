"""Policy sets as stored: one canonical JSON body per (section, object name).

A body is `microseg.policyfile.object_document` as compact JSON, fields in model order, so
equal objects have equal bodies byte for byte and comparing bodies compares objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from microseg.model import (
    SECTIONS,
    MicrosegError,
    PolicyError,
    PolicyObject,
    PolicySet,
    Problem,
)
from microseg.model.errors import validation_problems
from microseg.model.policyset import reference_problems, references_of
from microseg.policyfile import object_document
from microseg.store.errors import InvalidChange, ObjectKey

Bodies = dict[ObjectKey, str]


def check_section(section: str) -> None:
    if section not in SECTIONS:
        raise MicrosegError(f"unknown section {section!r} (known: {', '.join(SECTIONS)})")


def object_body(section: str, obj: BaseModel) -> str:
    return json.dumps(object_document(section, obj), ensure_ascii=False, separators=(",", ":"))


def policy_bodies(policy_set: PolicySet) -> Bodies:
    return {(section, obj.name): object_body(section, obj) for section, obj in policy_set.objects()}


def parse_object(
    section: str, obj: BaseModel | Mapping[str, Any], number: int | None = None
) -> PolicyObject:
    """A model object of `section` from an object or a plain mapping; PolicyError if invalid.

    `number`: the object's position among those given, its label if it has no name (`#2`,
    as the policy-file loader labels them)."""
    check_section(section)
    model = SECTIONS[section]
    if isinstance(obj, BaseModel):
        if not isinstance(obj, model):
            raise MicrosegError(
                f"a {type(obj).__name__} cannot go in section {section!r} "
                f"(it holds {model.__name__} objects)"
            )
        return obj
    if not isinstance(obj, Mapping):
        raise PolicyError([Problem(f"an object must be a mapping, got {obj!r}", (section,))])
    name = obj.get("name")
    label = name if isinstance(name, str) else (f"#{number}" if number is not None else "?")
    try:
        return model.model_validate(dict(obj))
    except ValidationError as error:
        raise PolicyError(validation_problems(section, label, obj, error)) from None


def object_order(key: ObjectKey) -> tuple[int, bytes]:
    """Sections in policy-file order, names in byte order: the canonical order."""
    section, name = key
    return list(SECTIONS).index(section), name.encode()


def policy_from_bodies(bodies: Bodies, what: str | None = None) -> PolicySet:
    """Validate stored bodies as one PolicySet. With `what`, problems raise InvalidChange."""
    try:
        return PolicySet.model_validate(_sections(bodies))
    except PolicyError as error:
        if what is None:
            raise
        raise InvalidChange(what, error.problems) from None


def _sections(bodies: Bodies) -> dict[str, tuple[BaseModel, ...]]:
    """Each section's objects, parsed from their bodies, in canonical order."""
    sections: dict[str, list[BaseModel]] = {section: [] for section in SECTIONS}
    for section, name in sorted(bodies, key=object_order):
        body = json.loads(bodies[section, name])
        sections[section].append(SECTIONS[section].model_validate(body))
    return {section: tuple(objects) for section, objects in sections.items()}


def reference_problems_of(
    bodies: Bodies, unvalidated: Mapping[ObjectKey, Mapping[str, Any]]
) -> list[Problem]:
    """Dangling references among valid bodies and objects that failed their own validation
    (`unvalidated`, as given): those exist, so references to them are not reported, and
    their own references are checked too, so one pass reports every problem."""
    candidate = PolicySet.model_construct(None, **_sections(bodies))
    reduced: dict[str, list[SimpleNamespace]] = {section: [] for section in SECTIONS}
    for (section, name), obj in unvalidated.items():
        reduced[section].append(references_of(section, name, obj))
    return reference_problems(candidate, reduced)


def apply_changes(bodies: Bodies, changes: Iterable[tuple[ObjectKey, str | None]]) -> Bodies:
    """`bodies` with each change applied: a body sets the object, None deletes it."""
    result = dict(bodies)
    for key, body in changes:
        if body is None:
            result.pop(key, None)
        else:
            result[key] = body
    return result


@dataclass(frozen=True)
class FieldChange:
    """One field of a changed object: its value before and after (as JSON values)."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class ObjectChange:
    """An object a workspace adds, changes or removes, relative to its base revision."""

    section: str
    name: str
    change: Literal["added", "changed", "removed"]
    fields: tuple[FieldChange, ...] = ()
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "name": self.name,
            "change": self.change,
            "fields": [
                {"field": f.field, "before": f.before, "after": f.after} for f in self.fields
            ],
            "before": self.before,
            "after": self.after,
        }


def object_changes(before: Bodies, after: Bodies) -> list[ObjectChange]:
    """Every object that differs between two stored states, in canonical order."""
    changes: list[ObjectChange] = []
    for key in sorted(before.keys() | after.keys(), key=object_order):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        section, name = key
        if old is None and new is not None:
            changes.append(ObjectChange(section, name, "added", after=json.loads(new)))
        elif new is None and old is not None:
            changes.append(ObjectChange(section, name, "removed", before=json.loads(old)))
        elif old is not None and new is not None:
            changes.append(_changed(section, name, json.loads(old), json.loads(new)))
    return changes


def _changed(section: str, name: str, old: dict, new: dict) -> ObjectChange:
    # Compare complete objects, defaults included, so a field reset to its default shows
    # its default value rather than vanishing.
    model = SECTIONS[section]
    full_old = model.model_validate(old).model_dump(mode="json")
    full_new = model.model_validate(new).model_dump(mode="json")
    fields = tuple(
        FieldChange(field, full_old[field], full_new[field])
        for field in full_new
        if full_old[field] != full_new[field]
    )
    return ObjectChange(section, name, "changed", fields, before=old, after=new)
