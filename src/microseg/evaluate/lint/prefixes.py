"""Nested prefixes: a prefix of a group inside another prefix of the same group.

The group's addresses are the union of its prefixes minus the union of its except-prefixes
(EOS `field-set ... prefix` with `except`), so a prefix inside another one of the same list
adds nothing and deleting it changes no address of the group; the same holds for an
except-prefix inside another except-prefix. (An except-prefix outside every prefix of its
group is already a validation error, located at file:line.)
"""

from __future__ import annotations

from microseg.evaluate.lint.registry import Check, Finding, LintContext, register
from microseg.model.objects import Group

LISTS = {"prefixes": "prefix", "except_prefixes": "except-prefix"}


def nested_prefixes(prefixes) -> list[tuple]:
    """(inner, outer) for each prefix inside another of the list (a repeat is inside its
    first occurrence). One pass over the prefixes sorted by family, start and length: a
    prefix is nested when it starts before the end of the widest prefix seen so far."""
    nested = []
    outer = None
    for prefix in sorted(prefixes, key=lambda p: (p.version, int(p.network_address), p.prefixlen)):
        if (
            outer is not None
            and outer.version == prefix.version
            and int(prefix.network_address) <= int(outer.broadcast_address)
        ):
            nested.append((prefix, outer))
        else:
            outer = prefix
    return nested


@register
class NestedPrefix(Check):
    """A prefix (or except-prefix) of a group contained in another of the same list."""

    name = "nested-prefix"
    summary = "prefixes of a group inside another prefix of the same group"

    def run(self, context: LintContext) -> list[Finding]:
        return [
            self._finding(group, field, inner, outer)
            for group in context.policy_set.groups
            for field in LISTS
            for inner, outer in nested_prefixes(getattr(group, field))
        ]

    def _finding(self, group: Group, field: str, inner, outer) -> Finding:
        kind = LISTS[field]
        where = "is listed twice" if inner == outer else f"is inside {kind} {outer}"
        return Finding(
            self.name,
            f"group '{group.name}'",
            f"{kind} {inner} of group {group.name} {where} of the same group",
            f"delete {kind} {inner} from group {group.name}"
            + (" once" if inner == outer else "")
            + ": the group's addresses do not change",
            {
                "group": group.name,
                "prefix": str(inner),
                "within": str(outer),
                "hints": [
                    {
                        "action": "remove-prefix",
                        "group": group.name,
                        "field": field,
                        "prefix": str(inner),
                    }
                ],
            },
        )
