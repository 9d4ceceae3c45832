"""Setting a workspace's objects from policy-file text, located: what `workspace set --file`
and the API's PUT/POST of objects share (a JSON body is YAML too, so it is read the same
way and its problems get a line and column in it)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from microseg.model import MicrosegError, PolicyError, Problem
from microseg.policyfile import PolicySource
from microseg.store.errors import InvalidChange, ObjectKey

if TYPE_CHECKING:
    from microseg.store.store import Store


def set_from_source(
    store: Store, workspace: str, source: PolicySource, what: str
) -> list[ObjectKey]:
    """Add or replace every object of `source` in `workspace`: all of them, or none.

    `what` names the source in messages (a file name, `request body`). Every problem (the
    text's shape, an object's fields, a reference the change breaks) is located in it."""
    if source.problems:
        raise PolicyError(source.problems)
    if not source.objects:
        raise MicrosegError(f"{what}: no objects to set")
    given = Counter((obj.section, obj.name) for obj in source.objects if obj.name is not None)
    twice = [
        Problem(f"duplicate name: defined {count} times", (section, object_name, "name"))
        for (section, object_name), count in given.items()
        if count > 1
    ]
    if twice:
        raise PolicyError(source.locate_all(twice))
    objects = [(obj.section, obj.data) for obj in source.objects]
    try:
        store.workspace_set_objects(workspace, objects)
    except PolicyError as error:
        located = source.locate_all(error.problems)
        if isinstance(error, InvalidChange):
            raise InvalidChange(error.what, located) from None
        raise PolicyError(located) from None
    return [(obj.section, str(obj.name)) for obj in source.objects]
