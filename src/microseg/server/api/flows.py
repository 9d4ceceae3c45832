"""Collected sessions (filtered, paged) and the policy builder's recommendations, from the
server's flow store (`microseg serve --flow-store`, else $MICROSEG_FLOW_STORE or the user
data dir, as the CLI)."""

from __future__ import annotations

import os
import pathlib
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from microseg.server.api.evaluate import POLICY_DOC, resolve
from microseg.server.api.models import PageLimit, PageOffset
from microseg.server.audit import audited
from microseg.server.auth import Editor, Viewer
from microseg.server.context import server_context
from microseg.server.flowstore import SERVER_FLOW_STORE, flow_store_path, server_sessions
from microseg.server.problems import RequestBody

router = APIRouter(prefix="/api", tags=["flows and policy builder"])


class SessionPage(BaseModel):
    total: int = Field(description="Session rows matching the filters.")
    offset: int
    limit: int
    sessions: list[dict[str, Any]]


@router.get("/sessions", response_model=SessionPage)
def sessions(
    principal: Viewer,
    request: Request,
    vrf: Annotated[str | None, Query(max_length=200)] = None,
    proto: Annotated[
        str | None, Query(max_length=20, description="tcp, udp, icmp, ... or a number.")
    ] = None,
    src: Annotated[
        str | None, Query(max_length=100, description="Client (initiator) address.")
    ] = None,
    dst: Annotated[str | None, Query(max_length=100, description="Server address.")] = None,
    port: Annotated[int | None, Query(ge=0, le=65535, description="Either port.")] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=40,
            description="Last seen at or after: 30m, 24h, 7d back from now, or an ISO 8601 "
            "time (UTC unless it names a zone).",
        ),
    ] = None,
    eph: Annotated[bool, Query(description="Fold client ports >= 49152 into `eph` rows.")] = True,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> dict[str, Any]:
    """The session table (`microseg sessions list --json`), filtered and paged; rows in
    first-seen order."""
    from microseg.builder.times import parse_moment
    from microseg.flows.flowstore import session_rows

    # One reading of a time for every --since, as the CLI's `sessions list --since`.
    start = parse_moment(since, "since", datetime.now(UTC)) if since is not None else None
    filters = (eph, vrf, proto, src, dst, port, start)
    table = _session_table(request, filters)
    page = table.slice(offset, limit) if offset < table.num_rows else table.slice(0, 0)
    return {
        "total": table.num_rows,
        "offset": offset,
        "limit": limit,
        "sessions": session_rows(page),
    }


# The session table of one state of the flow store, per filter: segments are written once
# and renamed into place, never rewritten (a compaction writes new ones and deletes the old),
# so the sorted segment names and sizes identify what a read returns.
_SESSION_TABLES: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_SESSION_TABLES_LOCK = threading.Lock()
SESSION_TABLES_KEPT = 16


def _store_state(path: pathlib.Path) -> tuple[Any, ...]:
    if path.is_file():
        status = path.stat()
        return (str(path), status.st_mtime_ns, status.st_size)
    segments = path / "segments"
    if not segments.is_dir():
        return (str(path), None)
    return (
        str(path),
        tuple(sorted((entry.name, entry.stat().st_size) for entry in os.scandir(segments))),
    )


def _session_table(request: Request, filters: tuple[Any, ...]) -> Any:
    from microseg.flows.flowstore import EPHEMERAL_PORT

    key = (_store_state(flow_store_path(request)), filters)
    with _SESSION_TABLES_LOCK:
        if key in _SESSION_TABLES:
            _SESSION_TABLES.move_to_end(key)
            return _SESSION_TABLES[key]
    eph, vrf, proto, src, dst, port, since = filters
    table = server_sessions(
        request,
        ephemeral_port=EPHEMERAL_PORT if eph else None,
        vrf=vrf,
        protocol=proto,
        src=src,
        dst=dst,
        port=port,
        since=since,
    )
    with _SESSION_TABLES_LOCK:
        _SESSION_TABLES[key] = table
        while len(_SESSION_TABLES) > SESSION_TABLES_KEPT:
            _SESSION_TABLES.popitem(last=False)
    return table


class RecommendQuery(RequestBody):
    """What a recommendation is made from (`microseg recommend` options)."""

    policy: str = Field(min_length=1, max_length=300, description=POLICY_DOC)
    categories: list[str] = Field(
        default_factory=list,
        description="Aggregate endpoints by groups with these categories: a rule then allows "
        "every address of such a group, seen or not (each rule's `widened` says how many).",
    )
    monitor_rule: str | None = Field(
        None, max_length=1000, description="Only sessions this rule matches."
    )
    target_policy: str | None = Field(
        None, max_length=1000, description="Only sessions of this policy; the rules go here."
    )
    vrf: str | None = Field(None, max_length=200)
    between: list[str] = Field(
        default_factory=list, description="Only sessions with an end in these prefixes."
    )
    since: str | None = Field(
        None, max_length=40, description="Sessions seen since: 30m, 24h, 7d ago, or an ISO time."
    )
    until: str | None = Field(
        None, max_length=40, description="Sessions seen until: 30m, 24h, 7d ago, or an ISO time."
    )
    min_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Use a whole existing group when this share was seen (>= 0.5).",
    )
    force_min_share: bool = Field(
        False, description="Take a min_share below 0.5 (groups used whole though mostly unseen)."
    )
    include_blocked: bool = False


class IntoWorkspace(RecommendQuery):
    force: bool = Field(False, description="Write even if a device goes over its hardware budget.")


def recommendation(request: Request, query: RecommendQuery) -> tuple[Any, Any]:
    """(the policy set, the Recommendation) for `query`, from the server's flow store."""
    from microseg.builder import BuilderOptions
    from microseg.builder import recommend as build
    from microseg.builder.scope import scope_from
    from microseg.flows.session_columns import session_columns

    policy_set = resolve(request, query.policy)
    scope = scope_from(
        policy_set,
        query.monitor_rule,
        query.target_policy,
        query.vrf,
        query.between,
        query.since,
        query.until,
    )
    options = BuilderOptions(
        categories=tuple(query.categories),
        scope=scope,
        min_share=query.min_share,
        force_min_share=query.force_min_share,
        include_blocked=query.include_blocked,
        target_policy=query.target_policy,
    )
    columns = session_columns(server_sessions(request), where=SERVER_FLOW_STORE)
    return policy_set, build(policy_set, columns, options)


@router.get("/recommend", response_model=dict[str, Any])
def recommend(
    principal: Viewer, request: Request, query: Annotated[RecommendQuery, Query()]
) -> dict[str, Any]:
    """Recommended rules from the collected sessions, with their evidence and a quality
    report (`microseg recommend --json`). Writing them into a workspace is
    POST /api/workspaces/{name}/recommend."""
    from microseg.builder.report import recommendation_json

    return recommendation_json(recommendation(request, query)[1])


@router.post("/workspaces/{name}/recommend", response_model=dict[str, Any], tags=["workspaces"])
def recommend_into_workspace(
    name: Annotated[str, Path(min_length=1, max_length=200)],
    body: IntoWorkspace,
    principal: Editor,
    request: Request,
) -> dict[str, Any]:
    """Recommend (as GET /api/recommend) and write the proposals into workspace `name`
    (created on the policy's revision unless open): new groups, services, rules and the
    target policy with the rules placed, all or none. Refused over a device's hardware
    budget unless `force`."""
    from microseg.builder.report import recommendation_json
    from microseg.builder.workspace import check_budget, write_recommendation

    policy_set, proposal = recommendation(request, body)
    check_budget(proposal, body.force)
    store = server_context(request).store
    written = write_recommendation(store, body.policy, policy_set, name, proposal, principal.name)
    objects = [f"{section}/{obj}" for section, obj in written]
    audited(
        request,
        principal,
        "workspace.recommend",
        f"workspace/{name}",
        {"policy": body.policy, "objects": objects},
    )
    data = recommendation_json(proposal)
    data["workspace"] = {"name": name, "objects": [{"section": s, "name": n} for s, n in written]}
    return data
