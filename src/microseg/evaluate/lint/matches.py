"""Match checks: matches that can never match, shadowed matches, rules that change nothing.

A finding speaks about the exact match it found (forward or reverse, IPv4 or IPv6). Its
hints are edits lint has verified over the whole packet space (`space.PolicyAnalysis`):

* `remove` a rule: only when removing all its matches changes no packet's verdict;
* make a rule `unidirectional`: only when none of its reverse matches decides a packet (the
  fix for a dead reverse match while the rule's forward matches decide packets: not removal);
* `move` a rule above another: only when that widens access for no packet (it does change
  verdicts: that is its point, and the fix says so).

Anything else is said, not hinted: lint never proposes an edit that widens access.
"""

from __future__ import annotations

from microseg.compile.intent import Match
from microseg.evaluate.cells import field_set_intervals
from microseg.evaluate.lint.registry import Check, Finding, LintContext, register
from microseg.evaluate.lint.space import PolicyAnalysis, describe_effect

PAST = {"forward": "forwarded", "drop": "dropped", "redirect": "redirected"}
THIRD_PERSON = {"forward": "forwards", "drop": "drops", "redirect": "redirects"}


def _which(match: Match) -> str:
    family = "IPv6" if match.family == "ipv6" else "IPv4"
    direction = "reverse" if match.reverse else "forward"
    return f"the {family} {direction} match of rule {match.rule}"


def _policies_with(context: LintContext, rule: str) -> list[PolicyAnalysis]:
    return [a for a in context.analyses if rule in a.rules]


def _removal_advice(context: LintContext, analysis: PolicyAnalysis, rule: str, prefix: str = ""):
    """(text, hint or None): what removing `rule` from this policy does."""
    outcome = context.edits.removable(analysis.policy.name, rule)
    policy = analysis.policy.name
    where = f" from policy {policy}" if len(_policies_with(context, rule)) > 1 else ""
    if not outcome.decided:
        return (
            f"lint could not prove that removing rule {rule} changes no verdict (too many "
            "packet classes to compare), so it does not suggest it",
            None,
        )
    if outcome.change is None:
        hint = {"action": "remove", "rule": rule, "policy": policy}
        return (
            f"{prefix}remove rule {rule}{where}: it is redundant, no packet's verdict changes",
            hint,
        )
    before, after = (describe_effect(e) for e in outcome.change)
    together = " together with the other removals lint suggests," if outcome.alongside else ""
    return (
        f"do not remove rule {rule}:{together} that would change verdicts (traffic it decides "
        f"would go from {before} to {after})",
        None,
    )


def _unidirectional_advice(context: LintContext, rule: str, prefix: str = ""):
    if rule in context.edits.unidirectional:
        return (
            f"{prefix}make rule {rule} unidirectional: its reverse matches decide no packet, "
            "so no verdict changes",
            {"action": "unidirectional", "rule": rule},
        )
    return None


def _move_advice(analysis: PolicyAnalysis, match: Match, above: Match):
    """Move the shadowed match's rule above the first rule that decides its traffic
    differently, only when that widens access for no packet."""
    widens = analysis.move_widens(match.rule, above.rule)
    if widens is False:
        return (
            f"to make rule {match.rule} {match.action} this traffic, move it above "
            f"{above.rule}: that changes verdicts, and never to a wider access",
            {
                "action": "move",
                "rule": match.rule,
                "above": above.rule,
                "policy": analysis.policy.name,
            },
        )
    if widens:
        return (
            f"moving rule {match.rule} above {above.rule} would widen access, so lint does not "
            f"suggest it: decide by hand whether that traffic should be {PAST[match.action]}",
            None,
        )
    return (
        f"lint could not decide whether moving rule {match.rule} above {above.rule} widens "
        "access (too many packet classes)",
        None,
    )


def _advice(parts: list[tuple[str, dict | None] | None]) -> tuple[str, list[dict]]:
    present = [p for p in parts if p is not None]
    return "; ".join(text for text, _ in present), [hint for _, hint in present if hint]


@register
class NeverMatches(Check):
    """A match no packet can fit, e.g. a group emptied by its except-prefixes."""

    name = "never-matches"
    summary = "matches no packet can fit (a group emptied by its except-prefixes)"

    def run(self, context: LintContext) -> list[Finding]:
        findings = []
        for analysis in context.analyses:
            for index, match in enumerate(analysis.matches):
                if analysis.coverage(index).empty:
                    findings.append(self._finding(context, analysis, match))
        return findings

    def _finding(self, context: LintContext, analysis: PolicyAnalysis, match: Match) -> Finding:
        field_sets = analysis.intent.prefix_field_sets
        empty_groups = [
            name
            for name in (*match.source_field_sets, *match.destination_field_sets)
            if not field_set_intervals(field_sets[(match.family, name)])
        ]
        reason = (
            f"group(s) {', '.join(sorted(set(empty_groups)))} hold no {match.family} address "
            "once their except-prefixes are removed"
            if empty_groups
            else "no packet fits its sources, destinations and services together"
        )
        fix, hints = _advice(
            [
                ("fix the groups' prefixes / except-prefixes or the services", None),
                _removal_advice(context, analysis, match.rule, prefix="or "),
            ]
        )
        policy = analysis.policy.name
        return Finding(
            self.name,
            f"rule '{match.rule}'",
            f"match {match.name} ({_which(match)}) in policy {policy} can never match: {reason}",
            fix,
            {"policy": policy, "match": match.name, "rule": match.rule, "hints": hints},
        )


@register
class Shadowed(Check):
    """A match every packet of which is decided by earlier matches."""

    name = "shadowed"
    summary = "matches whose every packet earlier matches decide (dead, or dead and wrong)"

    def run(self, context: LintContext) -> list[Finding]:
        findings = []
        for analysis in context.analyses:
            for index in range(len(analysis.matches)):
                coverage = analysis.coverage(index)
                if not coverage.empty and not coverage.reachable:
                    findings.append(self._finding(context, analysis, index, coverage))
        return findings

    def _finding(self, context, analysis: PolicyAnalysis, index: int, coverage) -> Finding:
        match = analysis.matches[index]
        blockers = [analysis.matches[i] for i in coverage.blockers]
        names = ", ".join(b.name for b in blockers)
        one = len(blockers) == 1
        taken = f"earlier match {names} takes" if one else f"earlier matches {names} take"
        conflicting = [b for b in blockers if b.action != match.action]
        if conflicting:
            action = conflicting[0].action
            verdict = (
                f"{taken} all its traffic and {THIRD_PERSON[action] if one else action} what "
                f"this rule would {match.action}"
            )
            # The first match that decides some of its traffic differently.
            first_other = next(
                analysis.matches[i]
                for i in coverage.deciders
                if analysis.matches[i].action != match.action
            )
            parts = [
                _move_advice(analysis, match, first_other),
                *_dead_match_advice(context, analysis, match, prefix="or "),
            ]
        else:
            verdict = f"{taken} all its traffic with the same action"
            parts = _dead_match_advice(context, analysis, match)
        fix, hints = _advice(parts)
        policy = analysis.policy.name
        return Finding(
            self.name,
            f"rule '{match.rule}'",
            f"match {match.name} ({_which(match)}) in policy {policy} is shadowed: {verdict}",
            fix,
            {
                "policy": policy,
                "match": match.name,
                "rule": match.rule,
                "reverse": match.reverse,
                "shadowed_by": [b.name for b in blockers],
                "action_differs": bool(conflicting),
                "hints": hints,
            },
        )


def _dead_match_advice(
    context: LintContext, analysis: PolicyAnalysis, match: Match, prefix: str = ""
) -> list[tuple[str, dict | None] | None]:
    """What to do about a match that decides nothing. A dead reverse match is fixed by
    making its rule unidirectional (verified); removing the rule is offered besides when it
    changes no verdict either, except for an allow rule whose forward match still decides
    packets in a default-forward policy: it repeats the default only until a drop is added
    below it, which is how a policy is built (`Redundant` does not report it either)."""
    unidirectional = _unidirectional_advice(context, match.rule, prefix) if match.reverse else None
    if unidirectional is None:
        return [_removal_advice(context, analysis, match.rule, prefix)]
    removal = _removal_advice(context, analysis, match.rule, "or ")
    if removal[1] is None:
        return [unidirectional, removal]  # "do not remove": a warning, not a fix
    allow_above_drops_to_come = match.action == "forward" == analysis.default[0]
    if allow_above_drops_to_come and _forward_decides(analysis, match.rule):
        return [unidirectional]
    return [unidirectional, removal]


def _forward_decides(analysis: PolicyAnalysis, rule: str) -> bool:
    return any(
        analysis.coverage(index).reachable
        for index in analysis.rules[rule]
        if not analysis.matches[index].reverse
    )


def _keepers(analysis: PolicyAnalysis) -> str:
    if analysis.default[0] == "forward":
        return "later rules"
    return f"later rules or the policy's default ({describe_effect(analysis.default)})"


@register
class Redundant(Check):
    """A rule whose matches all decide packets, yet removing it changes no verdict: later
    rules decide the same, or (default-drop policy) the default drop does. An allow rule
    that only repeats a default-forward is not reported: that is how a policy is built
    before its drops are added below it (the seed's DNS/NTP stage)."""

    name = "redundant"
    summary = "rules that decide traffic but change no verdict (later rules or the default agree)"

    def run(self, context: LintContext) -> list[Finding]:
        findings = []
        for analysis in context.analyses:
            for rule, indexes in analysis.rules.items():
                if not all(analysis.coverage(i).reachable for i in indexes):
                    continue  # its dead matches are reported, with this advice, by the others
                outcome = context.edits.removable(analysis.policy.name, rule)
                if outcome.decided and outcome.change is None:
                    findings.append(self._finding(context, analysis, rule))
        return findings

    def _finding(self, context: LintContext, analysis: PolicyAnalysis, rule: str) -> Finding:
        policy = analysis.policy.name
        text, hint = _removal_advice(context, analysis, rule)
        return Finding(
            self.name,
            f"rule '{rule}'",
            f"rule {rule} in policy {policy} changes no verdict: every packet it decides gets "
            f"the same verdict without it, from {_keepers(analysis)}",
            f"{text} (its hit counters go with it)",
            {"policy": policy, "rule": rule, "hints": [hint]},
        )
