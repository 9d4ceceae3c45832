"""Pure domain types and validation. No I/O, no SQL, no HTTP.

Names are loaded on first use (PEP 562): the errors need no pydantic, so a command that only
reports an error, and `microseg --help`, never import it (bench/startup.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from microseg.model.errors import MicrosegError, PolicyError, Problem
    from microseg.model.objects import (
        ANY,
        Category,
        Device,
        Group,
        MonitorNode,
        MonitorObject,
        Policy,
        PolicyObject,
        PortRange,
        RateLimit,
        RedirectObject,
        Rule,
        SecurityDomain,
        Segment,
        Service,
    )
    from microseg.model.policyset import REFERENCES, SECTIONS, PolicySet

_ERRORS = ("MicrosegError", "PolicyError", "Problem")
_POLICY_SET = ("REFERENCES", "SECTIONS", "PolicySet")

__all__ = [
    "ANY",
    "REFERENCES",
    "SECTIONS",
    "Category",
    "Device",
    "Group",
    "MicrosegError",
    "MonitorNode",
    "MonitorObject",
    "Policy",
    "PolicyError",
    "PolicyObject",
    "PolicySet",
    "PortRange",
    "Problem",
    "RateLimit",
    "RedirectObject",
    "Rule",
    "SecurityDomain",
    "Segment",
    "Service",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = "errors" if name in _ERRORS else "policyset" if name in _POLICY_SET else "objects"
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
