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
from microseg.builder.sessions import SessionColumns, read_session_table, session_columns

__all__ = [
    "BlockedAttempt",
    "BuilderOptions",
    "Evidence",
    "Quality",
    "Recommendation",
    "RecommendedRule",
    "Scope",
    "Selector",
    "SessionColumns",
    "SessionExample",
    "Widening",
    "policy_selectors",
    "read_session_table",
    "recommend",
    "rule_selector",
    "session_columns",
]
