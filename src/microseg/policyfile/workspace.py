"""Objects written as policy-file YAML, set into a store workspace with every problem
located in that text: what `microseg workspace set --file` and the UI's object editor do."""

from __future__ import annotations

from collections import Counter
from typing import Any

from microseg.model import MicrosegError, PolicyError, Problem
from microseg.policyfile.loader import PolicySource


def set_source_objects(store: Any, workspace: str, source: PolicySource, where: str) -> int:
    """Set every object of `source` into `workspace` (all, or none); the number set.

    `store` is a `microseg.store.Store`. Problems (the file's own, a name given twice, what
    the workspace's effective policy refuses) are raised as PolicyError / InvalidChange,
    each located in the source (file:line:column)."""
    from microseg.store import InvalidChange

    if source.problems:
        raise PolicyError(source.problems)
    if not source.objects:
        raise MicrosegError(f"{where}: no objects to set")
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
    return len(objects)
