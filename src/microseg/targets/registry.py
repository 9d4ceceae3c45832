"""The target registry: a platform name -> its Target, built-ins and plug-ins alike.

Which names exist is `microseg.model.platforms` (data only, so the model can validate a
device's `platform` without importing any target); this module loads the Target a name
refers to, once, and checks that it honours the `Target` protocol. Third-party targets
are distributions with an entry point in the group `microseg.targets`:

    [project.entry-points."microseg.targets"]
    junos = "microseg_junos:TARGET"

as NAPALM finds `napalm_*` drivers and Aerleon its `aerleon.plugin` generators.
"""

from __future__ import annotations

import importlib
from typing import Any

from microseg.compile.resolve import CompileError
from microseg.model.platforms import ENTRY_POINT_GROUP, platform_names, platform_references
from microseg.targets.target import Target

_loaded: dict[tuple[str, str], Target] = {}
_MEMBERS = ("name", "description", "capabilities", "limits", "default_verdict", "render", "driver")


class UnknownTarget(CompileError):
    """No target implements this platform name, or its plug-in does not load."""


def names() -> list[str]:
    """Every target's name: built-ins first, then plug-ins by name."""
    return platform_names()


def get(name: str) -> Target:
    """The Target called `name`; UnknownTarget naming the known ones otherwise."""
    reference = platform_references().get(name)
    if reference is None:
        raise UnknownTarget(
            f"target {name!r} is not known (known: {', '.join(names())}); third-party "
            f"targets register under the entry point group {ENTRY_POINT_GROUP!r}"
        )
    key = (name, reference)
    if key not in _loaded:
        _loaded[key] = _load(name, reference)
    return _loaded[key]


def for_device(device: Any) -> Target:
    """The target of a model Device or MonitorNode (its `platform`)."""
    return get(device.platform)


def _load(name: str, reference: str) -> Target:
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split(".") if attribute else ():
            target = getattr(target, part)
    except Exception as error:  # a plug-in's own bug must not crash microseg
        raise UnknownTarget(
            f"target {name!r} ({reference}) does not load: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(target, Target):
        missing = [member for member in _MEMBERS if not hasattr(target, member)]
        raise UnknownTarget(
            f"target {name!r} ({reference}) is not a Target: it lacks {', '.join(missing)}"
        )
    if target.name != name:
        raise UnknownTarget(
            f"target {name!r} ({reference}) calls itself {target.name!r}; the entry point "
            "name and the target's name must be the same"
        )
    return target
