"""Pure domain types and validation. No I/O, no SQL, no HTTP."""

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
