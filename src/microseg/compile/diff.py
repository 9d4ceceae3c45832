"""Section-aware unified diffs of device configurations, as a change review shows them.

Every hunk header names the configuration section its first change is in (`traffic-policies
> traffic-policy vrf_all_home > match web-to-appserver1 ipv4`), the way `git diff` names the
enclosing function, so a reviewer sees which match or field-set a change touches.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class DeviceDiff:
    """One device's change: unified diff text and line counts."""

    device: str
    added: int
    removed: int
    text: str

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def as_json(self) -> dict:
        return {
            "device": self.device,
            "added": self.added,
            "removed": self.removed,
            "diff": self.text,
        }


def section_path(lines: list[str], index: int) -> str:
    """The sections enclosing line `index` (itself included): each less-indented line above.

    `!` separators and blank lines are not sections. Indentation is spaces (EOS) or tabs
    (nftables)."""
    path: list[str] = []
    limit: int | None = None
    for line in reversed(lines[: index + 1]):
        stripped = line.strip()
        if not stripped or stripped.startswith("!"):
            continue
        indent = len(line) - len(line.lstrip(" \t"))
        if limit is None or indent < limit:
            path.append(stripped)
            limit = indent
            if indent == 0:
                break
    return " > ".join(reversed(path))


def diff_text(device: str, old: str, new: str, old_label: str, new_label: str) -> DeviceDiff:
    """Unified diff (3 lines of context) with each hunk header naming its section."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    out: list[str] = []
    added = removed = 0
    diff = difflib.unified_diff(
        old_lines, new_lines, f"{old_label} {device}", f"{new_label} {device}", lineterm=""
    )
    hunk_at = -1
    old_index = new_index = 0
    first_change_seen = True
    for line in diff:
        hunk = _HUNK.match(line)
        if hunk:
            hunk_at, first_change_seen = len(out), False
            old_index, new_index = max(int(hunk[1]) - 1, 0), max(int(hunk[3]) - 1, 0)
            out.append(line)
            continue
        if line.startswith(("---", "+++")) and hunk_at < 0:
            out.append(line)
            continue
        # The first change that is not a bare `!` separator names the hunk's section.
        if not first_change_seen and line[:1] in "+-" and line[1:].strip() != "!":
            first_change_seen = True
            lines, index = (new_lines, new_index) if line[0] == "+" else (old_lines, old_index)
            out[hunk_at] = f"{out[hunk_at]} {section_path(lines, index)}"
        if line[:1] == "+":
            added, new_index = added + 1, new_index + 1
        elif line[:1] == "-":
            removed, old_index = removed + 1, old_index + 1
        else:
            old_index, new_index = old_index + 1, new_index + 1
        out.append(line)
    return DeviceDiff(device, added, removed, "\n".join(out) + ("\n" if out else ""))


def summary(diffs: list[DeviceDiff]) -> dict:
    return {
        "devices_changed": sum(1 for d in diffs if d.changed),
        "lines_added": sum(d.added for d in diffs),
        "lines_removed": sum(d.removed for d in diffs),
    }
