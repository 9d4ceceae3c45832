"""Response models the routers share (the OpenAPI document's schemas)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict

# A policy object's name may hold '/' (EOS takes `dc1/web`; nftables escapes it). The routes
# read it as their last path segment with Starlette's `:path` converter, since paths are
# routed decoded (ASGI): `.../objects/groups/dc1%2Fweb` reaches the object `dc1/web`.
ObjectNameInPath = Annotated[
    str, Path(description="The object's name, percent-encoded; it may contain '/'.")
]

# A list endpoint's page: `limit` items after the `offset` first (the newest, for a log).
PageLimit = Annotated[int, Query(ge=1, le=10_000)]
PageOffset = Annotated[int, Query(ge=0, le=2**31 - 1)]


class WorkspaceOut(BaseModel):
    name: str
    base: int
    state: str
    author: str
    created_at: str
    changes: int
    submitted_revision: int | None


class FieldChangeOut(BaseModel):
    field: str
    before: Any
    after: Any


class ObjectChangeOut(BaseModel):
    section: str
    name: str
    change: str
    fields: list[FieldChangeOut]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class PolicyDocument(BaseModel):
    """A policy as a policy file holds it: sections of objects, sorted by name."""

    model_config = ConfigDict(extra="forbid")

    devices: list[dict[str, Any]] | None = None
    monitor_nodes: list[dict[str, Any]] | None = None
    domains: list[dict[str, Any]] | None = None
    categories: list[dict[str, Any]] | None = None
    groups: list[dict[str, Any]] | None = None
    services: list[dict[str, Any]] | None = None
    monitor_objects: list[dict[str, Any]] | None = None
    redirect_objects: list[dict[str, Any]] | None = None
    rules: list[dict[str, Any]] | None = None
    policies: list[dict[str, Any]] | None = None


class DeviceDiffOut(BaseModel):
    device: str
    added: int
    removed: int
    diff: str


class DiffSummary(BaseModel):
    devices_changed: int
    lines_added: int
    lines_removed: int


class DiffReport(BaseModel):
    """Per-device unified diffs of the compiled configuration, and their summary."""

    old: str
    new: str
    devices: list[DeviceDiffOut]
    summary: DiffSummary
