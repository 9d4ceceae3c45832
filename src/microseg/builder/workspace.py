"""Writing a recommendation into a store workspace, for review with `workspace build`."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from microseg.builder.proposal import Recommendation, proposed_policy_set
from microseg.model import MicrosegError, PolicyObject, PolicySet
from microseg.store.snapshot import policy_bodies
from microseg.store.specs import revision_number

if TYPE_CHECKING:
    from microseg.store import Store


def proposal_objects(
    base: PolicySet, recommendation: Recommendation
) -> list[tuple[str, PolicyObject]]:
    """(section, object) for every new group, service and rule, and the target policy with
    the rules placed in it: exactly what changes between `base` and the proposal."""
    objects: list[tuple[str, PolicyObject]] = [("groups", g) for g in recommendation.new_groups]
    objects += [("services", s) for s in recommendation.new_services]
    objects += [("rules", r.rule) for r in recommendation.rules]
    if recommendation.target_policy is not None and recommendation.rules:
        proposed = proposed_policy_set(base, recommendation)
        objects.append(("policies", proposed.policy(recommendation.target_policy)))
    return objects


def write_into_workspace(
    store: Store,
    workspace: str,
    base_revision: int | None,
    base: PolicySet,
    recommendation: Recommendation,
    author: str | None = None,
) -> list[tuple[str, str]]:
    """Create `workspace` (on `base_revision`, default the head) unless it is open already,
    then write the proposals in one transaction: all of them or none. No proposals: nothing,
    not even an empty workspace."""
    objects = proposal_objects(base, recommendation)
    if not objects:
        return []
    open_names = {w.name for w in store.workspace_list()}
    if workspace not in open_names:
        store.workspace_create(workspace, base=base_revision, author=author)
    store.workspace_set_objects(workspace, objects)
    return [(section, obj.name) for section, obj in objects]


def check_budget(recommendation: Recommendation, force: bool) -> None:
    """Refuse to write a proposal that takes a device over its hardware budget."""
    over = [
        use
        for use in recommendation.quality.hardware
        if use.over_budget and use.entries_after > use.entries_before
    ]
    if over and not force:
        devices = "; ".join(
            f"{u.device} {u.entries_before} -> {u.entries_after} entries, budget {u.budget}"
            for u in over
        )
        raise MicrosegError(
            f"the proposal goes over the hardware budget ({devices}; the target's planning "
            "figure, as lint reports it): "
            "narrow it (--categories, a scope) or write it anyway with --force"
        )


def write_recommendation(
    store: Store,
    policy: str,
    policy_set: PolicySet,
    workspace: str,
    recommendation: Recommendation,
    author: str | None = None,
) -> list[tuple[str, str]]:
    """Write the proposals into `workspace`, which must hold exactly the policy they were
    made from (`policy`: rev:N, ws:NAME or a file): its base revision (for rev:N) with no
    changes, or itself (for ws:NAME); a new workspace starts from the head, which must be
    that policy."""
    base_revision = revision_number(policy) if policy.startswith("rev:") else None
    source = _made_from(policy)
    if workspace in {w.name for w in store.workspace_list()}:
        base = store.workspace_base(workspace)
        if base_revision is not None and base_revision != base:
            raise MicrosegError(
                f"workspace {workspace!r} is based on revision {base}, but the "
                f"recommendation was made from revision {base_revision}: recommend from "
                f"rev:{base} or ws:{workspace}, or write into a new workspace"
            )
        if policy_bodies(store.workspace_policy(workspace)) != policy_bodies(policy_set):
            raise MicrosegError(
                f"workspace {workspace!r} (on revision {base}) holds a different policy "
                f"than {source}, which the recommendation was made from: recommend from "
                f"ws:{workspace}, or write into a new workspace"
            )
    elif base_revision is None:
        head = store.head()
        if head is None:
            raise MicrosegError("the store has no revisions yet: import a policy first")
        if policy_bodies(store.revision_policy(head)) != policy_bodies(policy_set):
            raise MicrosegError(
                f"a new workspace starts from the head revision {head}, but the "
                f"recommendation was made from {source}, which differs from it: "
                f"recommend from rev:{head}, or import the policy first"
            )
    return write_into_workspace(store, workspace, base_revision, policy_set, recommendation, author)


def _made_from(policy: str) -> str:
    if policy.startswith("rev:"):
        return f"revision {policy.removeprefix('rev:')}"
    if policy.startswith("ws:"):
        return f"workspace {policy.removeprefix('ws:')!r}"
    return policy


def selected(recommendation: Recommendation, rule_names: list[str]) -> Recommendation:
    """Only the proposals named in `rule_names`, with the new groups and services they use
    (what the Policy Builder page submits when some proposals are left unticked).

    The quality figures stay those of the whole recommendation: a subset adds no more
    hardware entries than all of it, so a budget check on them stays on the safe side."""
    unknown = sorted(set(rule_names) - {r.rule.name for r in recommendation.rules})
    if unknown:
        raise MicrosegError(f"no proposed rule {unknown[0]!r} in this recommendation")
    rules = tuple(r for r in recommendation.rules if r.rule.name in rule_names)
    used = {name for r in rules for name in (*r.rule.sources, *r.rule.destinations)}
    services = {name for r in rules for name in r.rule.services}
    return replace(
        recommendation,
        rules=rules,
        new_groups=tuple(g for g in recommendation.new_groups if g.name in used),
        new_services=tuple(s for s in recommendation.new_services if s.name in services),
    )
