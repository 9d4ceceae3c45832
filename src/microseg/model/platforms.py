"""Which `platform` a device may name: the built-in targets plus the installed plug-ins.

A platform is a target package (`microseg.targets.eos`, a third-party distribution...). The
model must not import those (dependencies point down: targets import the model, never the
reverse), yet it must refuse a device whose platform no target implements. So the model
keeps the catalogue as *data*: each platform name with the object reference
(`module:attribute`) of its Target, for the built-ins here and for plug-ins in the
installed distributions' entry point metadata (group `microseg.targets`, read with
importlib.metadata; nothing is imported). `microseg.targets.registry` loads the Target a
reference names; this module only says which names exist.

This is the same split as Python packaging itself: entry points are strings in metadata
until someone loads them.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "microseg.targets"
# The targets microseg ships (Aerleon's BUILTIN_GENERATORS, NAPALM's core drivers).
BUILTIN_TARGETS: dict[str, str] = {
    "eos": "microseg.targets.eos.target:TARGET",
    "nftables": "microseg.targets.nftables.target:TARGET",
}


def platform_references() -> dict[str, str]:
    """Platform name -> `module:attribute` of its Target, built-ins first, then plug-ins
    in name order. A plug-in may not take a built-in's name (it is ignored)."""
    references = dict(BUILTIN_TARGETS)
    for name, value in _plugin_references(tuple(sys.path)):
        references.setdefault(name, value)
    return references


def platform_names() -> list[str]:
    return list(platform_references())


def check_platform(value: str) -> str:
    """`value` if a target implements it; otherwise a ValueError naming the known ones."""
    names = platform_names()
    if value not in names:
        raise ValueError(
            f"platform {value!r} is not a known target (known: {', '.join(names)}); "
            f"third-party targets register under the entry point group {ENTRY_POINT_GROUP!r}"
        )
    return value


@lru_cache(maxsize=8)
def _plugin_references(search_path: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(name, reference) of every `microseg.targets` entry point on `search_path` (the
    cache key: a changed sys.path is looked up again)."""
    found = {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}
    return tuple(sorted(found.items()))
