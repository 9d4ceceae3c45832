"""Writing a recommendation into a store workspace, for review with `workspace build`."""

from __future__ import annotations

from microseg.builder.proposal import Recommendation, proposed_policy_set
from microseg.model import PolicyObject, PolicySet


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
    store,
    workspace: str,
    base_revision: int | None,
    base: PolicySet,
    recommendation: Recommendation,
) -> list[tuple[str, str]]:
    """Create `workspace` (on `base_revision`, default the head) unless it is open already,
    then write the proposals in one transaction: all of them or none."""
    open_names = {w.name for w in store.workspace_list()}
    if workspace not in open_names:
        store.workspace_create(workspace, base=base_revision)
    objects = proposal_objects(base, recommendation)
    store.workspace_set_objects(workspace, objects)
    return [(section, obj.name) for section, obj in objects]
