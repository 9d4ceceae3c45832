"""Unused objects: rules in no policy, and groups, services, monitor and redirect objects no
rule in a policy uses, categories no group carries."""

from __future__ import annotations

from microseg.evaluate.lint.registry import Check, Finding, LintContext, register


@register
class Unused(Check):
    """Objects nothing enforced refers to."""

    name = "unused"
    summary = "rules in no policy; groups, services, monitor/redirect objects, categories unused"

    def run(self, context: LintContext) -> list[Finding]:
        policy_set = context.policy_set
        in_policy = {r for p in policy_set.policies for r in p.rules}
        findings = [
            Finding(
                self.name,
                f"rule '{rule.name}'",
                f"rule {rule.name} is in no policy, so no device enforces it",
                "add it to a policy's rules, or delete it",
            )
            for rule in policy_set.rules
            if rule.name not in in_policy
        ]
        used_rules = [r for r in policy_set.rules if r.name in in_policy]
        references = {
            "group": {g for r in used_rules for g in (*r.sources, *r.destinations)},
            "service": {s for r in used_rules for s in r.services},
            "monitor object": {r.monitor for r in used_rules if r.monitor},
            "redirect object": {r.redirect for r in used_rules if r.redirect},
            "category": {c for g in policy_set.groups for c in g.categories},
        }
        sections = {
            "group": policy_set.groups,
            "service": policy_set.services,
            "monitor object": policy_set.monitor_objects,
            "redirect object": policy_set.redirect_objects,
            "category": policy_set.categories,
        }
        for kind, objects in sections.items():
            user = "no group carries it" if kind == "category" else "no rule in a policy uses it"
            findings += [
                Finding(
                    self.name,
                    f"{kind} '{obj.name}'",
                    f"{kind} {obj.name} is unused: {user}",
                    f"delete {kind} {obj.name}, or reference it",
                )
                for obj in objects
                if obj.name not in references[kind]
            ]
        return findings
