"""A Recommendation as plain, deterministic JSON data (what `recommend --json` prints)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from microseg.builder.proposal import Recommendation, RecommendedRule
from microseg.policyfile import object_document


def recommendation_json(recommendation: Recommendation) -> dict[str, Any]:
    quality = recommendation.quality
    return {
        "target_policy": recommendation.target_policy,
        "categories": list(recommendation.categories),
        "scoped_sessions": recommendation.scoped_sessions,
        "rules": [_rule_json(r) for r in recommendation.rules],
        # Every rule allowing addresses no session of its evidence came from or went to.
        "widened": [
            {"rule": r.rule.name, **asdict(w)} for r in recommendation.rules for w in r.widened
        ],
        "new_groups": [object_document("groups", g) for g in recommendation.new_groups],
        "new_services": [object_document("services", s) for s in recommendation.new_services],
        "blocked_attempts": [asdict(a) for a in recommendation.blocked_attempts],
        "already_allowed": [asdict(d) for d in recommendation.already_allowed],
        "blocked_by_rules": [asdict(d) for d in recommendation.blocked_by_rules],
        "unexplained": None
        if recommendation.unexplained is None
        else asdict(recommendation.unexplained),
        "quality": {
            "coverage": None if quality.coverage is None else round(quality.coverage, 6),
            "covered_sessions": quality.covered_sessions,
            "evidence_sessions": quality.evidence_sessions,
            "rules": quality.rules,
            "config_lines": quality.config_lines,
            "over_permissiveness": round(quality.over_permissiveness, 6),
            "observed_combinations": quality.observed_combinations,
            "allowed_combinations": quality.allowed_combinations,
            "hardware": [{**asdict(h), "over_budget": h.over_budget} for h in quality.hardware],
            "unverified": [asdict(u) for u in quality.unverified],
            "notes": list(quality.notes),
        },
    }


def _rule_json(recommended: RecommendedRule) -> dict[str, Any]:
    rule = recommended.rule
    evidence = asdict(recommended.evidence)
    return {
        "name": rule.name,
        "sources": list(rule.sources),
        "destinations": list(rule.destinations),
        "services": list(rule.services),
        "direction": rule.direction,
        "action": rule.action,
        "evidence": evidence,
        "widened": [asdict(w) for w in recommended.widened],
        "current_decisions": [asdict(d) for d in recommended.current_decisions],
        "allowed_combinations": recommended.allowed_combinations,
        "insert_at": recommended.insert_at,
        "placed_before": recommended.before,
    }
