"""Compile, diff, check, lint and what-if on stored policies (`rev:N`, `ws:NAME`).

The API takes only stored policies: a server never reads a path a client names."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from microseg.compile.diff import summary
from microseg.compile.intent import DeviceIntent
from microseg.evaluate.check import check_connection, check_groups, is_address
from microseg.model import MicrosegError, PolicySet
from microseg.server.api.models import DiffReport
from microseg.server.auth import Viewer
from microseg.server.context import server_context
from microseg.store.specs import is_stored_spec, revision_number, stored_policy
from microseg.targets import registry
from microseg.targets.render import check_configured, diff_policies, render_config

router = APIRouter(prefix="/api", tags=["compile and check"])

POLICY_DOC = "A stored policy: rev:N (a revision) or ws:NAME (a workspace)."
Spec = Annotated[str, Query(min_length=1, max_length=300, description=POLICY_DOC)]


def resolve(request: Request, spec: str, parameter: str = "policy") -> PolicySet:
    """The stored policy `spec` names (a revision from the server's cache)."""
    return resolve_compiled(request, spec, parameter, compiled=False)[0]


def resolve_compiled(
    request: Request, spec: str, parameter: str = "policy", compiled: bool = True
) -> tuple[PolicySet, dict[str, DeviceIntent] | None]:
    """The policy and, for a revision, its compiled intents (cached: revisions never change;
    None for a workspace, which the caller compiles)."""
    if not is_stored_spec(spec):
        raise MicrosegError(
            f"{parameter} {spec[:60]!r}: give rev:N (a revision) or ws:NAME (a workspace); "
            "the server does not read files"
        )
    context = server_context(request)
    if spec.startswith("rev:"):
        number = revision_number(spec)
        intents = context.revisions.intents(number) if compiled else None
        return context.revisions.policy(number), intents
    return stored_policy(context.store, spec), None


class Compiled(BaseModel):
    device: str
    target: str
    config: str


@router.get("/compile", response_model=Compiled)
def compile_device(
    principal: Viewer,
    request: Request,
    policy: Spec,
    device: Annotated[str, Query(min_length=1, max_length=1000)],
    target: Annotated[str | None, Query(description="eos, nftables or a plug-in.")] = None,
    omit_mirror: bool = False,
) -> dict[str, Any]:
    """One device's (or monitor node's) configuration (`microseg compile`)."""
    if target is not None and target not in registry.names():
        raise MicrosegError(f"target {target!r}: choose one of {', '.join(registry.names())}")
    if policy.startswith("rev:"):
        revisions = server_context(request).revisions
        config, used = revisions.config(revision_number(policy), device, target, omit_mirror)
    else:
        policy_set = resolve(request, policy)
        config, used = render_config(policy_set, device, target, omit_mirror=omit_mirror)
    return {"device": device, "target": used, "config": config}


@router.get("/diff", response_model=DiffReport)
def diff(
    principal: Viewer,
    request: Request,
    old: Spec,
    new: Spec,
    device: Annotated[list[str] | None, Query(description="Only these devices.")] = None,
) -> dict[str, Any]:
    """Per-device, section-aware unified diff of the compiled configuration
    (`microseg diff`): every device, changed or not, and the summary."""
    old_set, new_set = resolve(request, old, "old"), resolve(request, new, "new")
    check_configured(old_set, new_set, device)
    diffs = diff_policies(old_set, new_set, device or None, old, new)
    return {
        "old": old,
        "new": new,
        "devices": [d.as_json() for d in diffs],
        "summary": summary(diffs),
    }


@router.get("/check", response_model=dict[str, Any])
def check(
    principal: Viewer,
    request: Request,
    policy: Spec,
    source: Annotated[
        str, Query(alias="from", min_length=1, max_length=300, description="An address or a group.")
    ],
    destination: Annotated[
        str, Query(alias="to", min_length=1, max_length=300, description="An address or a group.")
    ],
    proto: Annotated[
        str, Query(max_length=20, description="tcp, udp, icmp, icmpv6 or a number.")
    ] = "tcp",
    port: Annotated[
        str | None,
        Query(max_length=20, description="tcp/udp: a number or an EOS name (ssh, www, domain)."),
    ] = None,
    icmp_type: Annotated[str | None, Query(max_length=40)] = None,
    device: Annotated[str | None, Query(max_length=1000)] = None,
    vrf: Annotated[str, Query(min_length=1, max_length=200)] = "default",
) -> dict[str, Any]:
    """Can `from` reach `to`, and which rule decides, on the request and the reply
    (`microseg check --json`); for groups, per pair of address classes."""
    policy_set, intents = resolve_compiled(request, policy)
    if is_address(source) and is_address(destination):
        engines = None
        if policy.startswith("rev:"):
            engines = server_context(request).revisions.engines(revision_number(policy))
        return check_connection(
            policy_set, source, destination, proto, port, icmp_type, vrf, device, intents, engines
        ).as_dict()
    return check_groups(
        policy_set, source, destination, proto, port, icmp_type, vrf, device
    ).as_dict()


@router.get("/lint", response_model=dict[str, Any])
def lint(
    principal: Viewer,
    request: Request,
    policy: Spec,
    select: Annotated[list[str] | None, Query(description="Only these checks.")] = None,
    ignore: Annotated[list[str] | None, Query(description="Skip these checks.")] = None,
) -> dict[str, Any]:
    """Dead, shadowed and redundant rules, nested prefixes, unused objects, switch bypass,
    hardware budget (`microseg lint --json`); `clean` is false when there are findings."""
    from microseg.evaluate.lint import lint as lint_policy

    return lint_policy(resolve(request, policy), select or None, ignore or None)


@router.get("/whatif", response_model=dict[str, Any])
def whatif(
    principal: Viewer,
    request: Request,
    base: Spec,
    candidate: Spec,
    device: Annotated[str | None, Query(max_length=1000)] = None,
) -> dict[str, Any]:
    """Replay the collected sessions (the server's flow store) against base and candidate:
    what a change newly blocks or allows (`microseg whatif --json`)."""
    from microseg.evaluate.whatif import replay_cuts
    from microseg.evaluate.whatif import whatif as replay
    from microseg.server.flowstore import SERVER_FLOW_STORE, server_sessions

    before, after = resolve(request, base, "base"), resolve(request, candidate, "candidate")
    sessions = server_sessions(request, replay_cuts=replay_cuts(before, after))
    return replay(before, after, sessions, device, SERVER_FLOW_STORE)
