"""EOS running-config text cut into top-level sections, and the sections microseg owns.

`show running-config` prints one top-level command per line at column 0, its sub-mode
commands indented three spaces per level, and `!` lines between blocks (the seed's two
switch listings and the vZTX listing show it). A *section* is one top-level command with
everything indented under it.

What microseg owns -- and so replaces on every load -- depends on the device's role:

* a **switch**: the `traffic-policies` block, and every `monitor session NAME ...` line
  whose NAME a `mirror session NAME` action of a traffic-policy names (on the device now,
  or in the configuration being loaded): the GRE mirror destinations of monitored rules;
* a **monitor node** (vZTX): its `flow tracking firewall distributed` block, and every
  `interface TunnelN` that microseg rendered (its description starts with
  `TUNNEL_DESCRIPTION_PREFIX`) or that the configuration being loaded defines.

Everything else on the device is left exactly as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from microseg.targets.eos.monitor_node import TUNNEL_DESCRIPTION_PREFIX

Role = Literal["switch", "monitor-node"]
ROLES: tuple[Role, ...] = ("switch", "monitor-node")

INDENT = "   "
TRAFFIC_POLICIES = "traffic-policies"
FLOW_TRACKING = "flow tracking firewall distributed"
_MONITOR_SESSION = re.compile(r"monitor session (\S+) ")
_MIRROR_ACTION = re.compile(r"\s+mirror session (\S+)$")
_TUNNEL = re.compile(r"interface Tunnel\d+$")
_TUNNEL_DESCRIPTION = f"{INDENT}description {TUNNEL_DESCRIPTION_PREFIX}"


@dataclass(frozen=True)
class Section:
    """One top-level command and the lines indented under it, as the device prints them."""

    lines: tuple[str, ...]

    @property
    def head(self) -> str:
        return self.lines[0]


class SectionError(ValueError):
    """Configuration text that is not EOS running-config layout, or not microseg's to load."""


def parse_sections(text: str) -> list[Section]:
    """The top-level sections of `show running-config` text (or of a rendered config).

    Top-level `!` lines and `end` only separate sections and are dropped; `!` lines
    inside a section are kept, as the device prints them.
    """
    sections: list[Section] = []
    current: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if line[0] != " ":
            if current:
                sections.append(Section(tuple(current)))
            current = [] if line.startswith("!") or line == "end" else [line.rstrip()]
        elif current:
            current.append(line.rstrip())
        else:
            raise SectionError(f"line {number}: {line.strip()!r} is indented but under no command")
    if current:
        sections.append(Section(tuple(current)))
    return sections


def render_sections(sections: Iterable[Section]) -> str:
    """Sections as the device prints them: a `!` after each block; consecutive one-line
    commands of one feature (`monitor session ...`) stay together, as in the seed."""
    sections = list(sections)
    lines: list[str] = []
    for index, section in enumerate(sections):
        lines.extend(section.lines)
        following = sections[index + 1] if index + 1 < len(sections) else None
        if following is None or not _same_feature_lines(section, following):
            lines.append("!")
    return "\n".join(lines) + "\n" if lines else ""


def _same_feature_lines(first: Section, second: Section) -> bool:
    if len(first.lines) > 1 or len(second.lines) > 1:
        return False
    return first.head.split()[:2] == second.head.split()[:2]


def owned_sections(sections: list[Section], role: Role, incoming: list[Section]) -> list[Section]:
    """The sections of `sections` that microseg owns on a device of `role`, given the
    sections about to be loaded (`incoming`, which can extend what is owned)."""
    if role == "switch":
        mirrored = _mirror_sessions(sections) | _mirror_sessions(incoming)
        mirrored |= {name for s in incoming if (name := _monitor_session_name(s)) is not None}
        return [
            s
            for s in sections
            if s.head == TRAFFIC_POLICIES or _monitor_session_name(s) in mirrored
        ]
    incoming_heads = {s.head for s in incoming}
    return [
        s
        for s in sections
        if s.head == FLOW_TRACKING
        or (
            _TUNNEL.match(s.head)
            and (_TUNNEL_DESCRIPTION in _descriptions(s) or s.head in incoming_heads)
        )
    ]


def _mirror_sessions(sections: list[Section]) -> set[str]:
    names = set()
    for section in sections:
        if section.head == TRAFFIC_POLICIES:
            names |= {m.group(1) for line in section.lines if (m := _MIRROR_ACTION.match(line))}
    return names


def _monitor_session_name(section: Section) -> str | None:
    found = _MONITOR_SESSION.match(section.head)
    return found.group(1) if found else None


def _descriptions(section: Section) -> set[str]:
    return {line[: len(_TUNNEL_DESCRIPTION)] for line in section.lines[1:]}


def check_loadable(incoming: list[Section], role: Role) -> None:
    """SectionError unless every section of a configuration to load is one microseg owns:
    a load must never carry (and so replace) anything else."""
    owned = owned_sections(incoming, role, incoming)
    strays = [s.head for s in incoming if s not in owned]
    if strays:
        raise SectionError(
            f"the configuration has sections microseg does not own on a {role}: "
            + ", ".join(repr(head) for head in strays)
        )


def replace_owned(running: str, config: str, role: Role) -> list[Section]:
    """The device's whole configuration with the owned sections replaced by `config`'s.

    Sections microseg does not own keep their text and their order; the owned sections
    of `config` follow them.
    """
    incoming = parse_sections(config)
    check_loadable(incoming, role)
    device = parse_sections(running)
    owned = owned_sections(device, role, incoming)
    return [s for s in device if s not in owned] + incoming


def cli_commands(sections: Iterable[Section]) -> list[str | dict[str, str]]:
    """eAPI commands that enter `sections` in configuration mode.

    Indentation becomes explicit `exit`s, so each command runs in the mode its parent
    line opened. Consecutive `!!` comment lines become one `comment` command with the
    text as input: eAPI does not take `!!` lines (NAPALM's EOS driver,
    `_mode_comment_convert`, converts them the same way). Other `!` lines only separate
    blocks and are not sent.
    """
    commands: list[str | dict[str, str]] = []
    for section in sections:
        items = [(_level(line), line.strip()) for line in section.lines]
        items = [(level, text) for level, text in items if not _is_separator(text)]
        open_levels: list[int] = []
        comment: list[str] = []
        for index, (level, text) in enumerate(items):
            if text.startswith("!!"):
                comment.append(text[2:].strip())
                continue
            while open_levels and open_levels[-1] >= level:
                commands.append("exit")
                open_levels.pop()
            if comment:
                commands.append({"cmd": "comment", "input": "\n".join(comment)})
                comment = []
            commands.append(text)
            if index + 1 < len(items) and items[index + 1][0] > level:
                open_levels.append(level)
        if comment:
            commands.append({"cmd": "comment", "input": "\n".join(comment)})
        commands.extend("exit" for _ in open_levels)
    return commands


def _level(line: str) -> int:
    return (len(line) - len(line.lstrip(" "))) // len(INDENT)


def _is_separator(text: str) -> bool:
    return text.startswith("!") and not text.startswith("!!")
