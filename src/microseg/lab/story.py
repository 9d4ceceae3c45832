"""The seed story on the live lab, as one script: the README's "The seed story, live" shows
these commands, `microseg demo --live` runs them, and tests/lab/test_story.py checks what
each prints.

Watch DNS/NTP -> traffic -> collected sessions -> the builder's rules (by category) into a
workspace -> submit -> change -> approve -> run -> the web-app policy -> the seed's table on
real connections -> without bridge isolation, the same checks become "not enforced".
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

SWITCH = "andreasm-720xp-home"


@dataclass(frozen=True)
class StoryStep:
    """One command of the story (`microseg` arguments; `examples/` is the shipped
    examples directory) and what it shows."""

    says: str
    arguments: tuple[str, ...]

    def command(self) -> str:
        return shlex.join(("microseg", *self.arguments))


STORY = (
    StoryStep(
        "the lab, with a policy that only watches: the switch mirrors what the wifi clients "
        "send to the DNS/NTP servers to the vZTX (change 1)",
        ("lab", "up", "examples/home-lab-discovery.yaml"),
    ),
    StoryStep("the seed's traffic mix, from the lab's hosts", ("lab", "traffic", "--count", "3")),
    StoryStep("what the monitor node collected", ("sessions", "list")),
    StoryStep(
        "the Policy Builder's rules, by category, into a workspace",
        (
            "recommend",
            "rev:1",
            "--monitor-rule",
            "dns-ntp-discovery",
            "--categories",
            "clients,infrastructure",
            "--into-workspace",
            "builder-1",
        ),
    ),
    StoryStep(
        "submit the workspace (revision 2)",
        ("workspace", "submit", "builder-1", "-m", "DNS and NTP for the wifi clients"),
    ),
    StoryStep(
        "a change deploying it to the switch (the lab's vZTX is no EOS device: name the switch)",
        ("change", "create", "--device", SWITCH, "-m", "DNS and NTP rules from the builder"),
    ),
    StoryStep("review", ("change", "approve", "2", "--comment", "rules reviewed")),
    StoryStep("deploy", ("change", "run", "2")),
    StoryStep(
        "the web-app policy, through a change (change 3)",
        ("lab", "deploy", "examples/home-lab.yaml"),
    ),
    StoryStep("the seed's table, real connections next to check", ("lab", "test")),
    StoryStep("down", ("lab", "down")),
    StoryStep(
        "the same policy without bridge port isolation (the seed's Ooops)",
        ("lab", "up", "examples/home-lab.yaml", "--no-isolation"),
    ),
    StoryStep("web01 reaches web02: not enforced", ("lab", "test")),
    StoryStep("down", ("lab", "down")),
)
