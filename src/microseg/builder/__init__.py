"""Policy builder: recommended rules from collected sessions."""

from microseg.builder.proposal import (
    BlockedAttempt,
    BuilderOptions,
    Evidence,
    Quality,
    Recommendation,
    RecommendedRule,
    SessionExample,
    Widening,
)
from microseg.builder.recommend import recommend
from microseg.builder.scope import Scope, Selector, policy_selectors, rule_selector

__all__ = [
    "BlockedAttempt",
    "BuilderOptions",
    "Evidence",
    "Quality",
    "Recommendation",
    "RecommendedRule",
    "Scope",
    "Selector",
    "SessionExample",
    "Widening",
    "policy_selectors",
    "recommend",
    "rule_selector",
]
