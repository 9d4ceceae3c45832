"""Run the README's ```console blocks and compare their output (cram/prysk style).

How a README transcript is read (README.md, "This README is tested", says the same):

* Every fenced ```console block is executed; other fences (```sh, plain ```) are not.
* `$ COMMAND` is run by bash; `> ` lines right after it continue it (a here-document).
  The lines after it, up to the next `$ ` line or the end of the block, are its expected
  output: stdout and stderr together, in the order written.
* Each `## ` section is one session, run in document order: a fresh temporary directory
  holding a copy of `examples/`, an empty store (`MICROSEG_DATABASE_URL`), an empty flow
  store (`MICROSEG_FLOW_STORE`) and `MICROSEG_AUTHOR=andreas`. `microseg` is this checkout.
* Output is compared exactly, except: trailing spaces and trailing blank lines are ignored;
  a line that is only `...` stands for any number of lines; `...` inside a line stands for
  any text within that line.
* Volatile text (times the store records, temporary paths) is masked by an HTML comment
  right before the block, which a rendered README does not show:
  `<!-- readme-test: mask REGEX -->` replaces every match of REGEX by the same placeholder
  in the expected and the actual output of that block (repeatable).
  `<!-- readme-test: skip REASON -->` leaves a console block unrun (say why).
* A command must exit 0 or 1 (1: the user error or the findings its output shows); exit 70
  (internal error) or any other status fails, and so does a non-zero exit whose expected
  output is only `...`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ELLIPSIS = "..."
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(\w+)\s*(.*?)\s*-->\s*$")
MASK = "<masked>"


@dataclass
class Command:
    line: int  # README line of the `$ ` line
    text: str
    expected: list[str]


@dataclass
class Block:
    line: int  # README line of the opening fence
    commands: list[Command]
    masks: list[str] = field(default_factory=list)
    skip: str | None = None


@dataclass
class Section:
    title: str
    line: int
    blocks: list[Block] = field(default_factory=list)


def parse_readme(text: str) -> list[Section]:
    """The README's sections with their ```console blocks."""
    sections = [Section("(preamble)", 1)]
    lines = text.splitlines()
    directives: list[tuple[str, str]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## "):
            sections.append(Section(line[3:].strip(), index + 1))
        elif match := DIRECTIVE.match(line):
            directives.append((match.group(1), match.group(2)))
            index += 1
            continue
        elif line.startswith("```"):
            fence_line, language = index + 1, line[3:].strip()
            body = []
            index += 1
            while index < len(lines) and not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            if index == len(lines):
                raise ValueError(f"README.md:{fence_line}: fence never closed")
            if language == "console":
                sections[-1].blocks.append(_block(fence_line, body, directives))
            elif directives:
                raise ValueError(
                    f"README.md:{fence_line}: readme-test directive on a non-console block"
                )
        elif line.strip() and directives:
            raise ValueError(
                f"README.md:{index + 1}: readme-test directive not right before a block"
            )
        directives = [] if line.strip() else directives
        index += 1
    return [section for section in sections if section.blocks]


def _block(fence_line: int, body: list[str], directives: list[tuple[str, str]]) -> Block:
    block = Block(fence_line, [])
    for name, argument in directives:
        if name == "mask":
            re.compile(argument)
            block.masks.append(argument)
        elif name == "skip" and argument:
            block.skip = argument
        else:
            raise ValueError(f"README.md:{fence_line}: unknown directive {name!r} {argument!r}")
    for offset, line in enumerate(body, fence_line + 1):
        if line.startswith("$ "):
            block.commands.append(Command(offset, line[2:], []))
        elif not block.commands:
            raise ValueError(f"README.md:{offset}: console block must start with a `$ ` line")
        elif line.startswith("> ") and not block.commands[-1].expected:
            block.commands[-1].text += "\n" + line[2:]
        else:
            block.commands[-1].expected.append(line)
    return block


def _normalise(lines: list[str], masks: list[str]) -> list[str]:
    result = []
    for line in lines:
        for mask in masks:
            line = re.sub(mask, MASK, line)
        result.append(line.rstrip())
    while result and not result[-1]:
        result.pop()
    return result


def _line_matches(expected: str, actual: str) -> bool:
    if ELLIPSIS not in expected:
        return expected == actual
    pattern = ".*?".join(re.escape(part) for part in expected.split(ELLIPSIS))
    return re.fullmatch(pattern, actual) is not None


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Whether `actual` fits `expected`, with `...` lines matching any number of lines."""
    # Memoised over (expected index, actual index): linear in practice, never exponential.
    memo: dict[tuple[int, int], bool] = {}

    def fits(e: int, a: int) -> bool:
        key = (e, a)
        if key not in memo:
            if e == len(expected):
                memo[key] = a == len(actual)
            elif expected[e] == ELLIPSIS:
                memo[key] = fits(e + 1, a) or (a < len(actual) and fits(e, a + 1))
            else:
                memo[key] = (
                    a < len(actual) and _line_matches(expected[e], actual[a]) and fits(e + 1, a + 1)
                )
        return memo[key]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * (len(expected) + len(actual)) + 100))
    return fits(0, 0)


class Session:
    """A temporary directory with examples/ copied, its own store and flow store."""

    def __init__(self, root: Path, src: Path):
        self.directory = Path(tempfile.mkdtemp(prefix="readme-"))
        shutil.copytree(root / "examples", self.directory / "examples")
        bin_dir = self.directory / ".bin"
        bin_dir.mkdir()
        shim = bin_dir / "microseg"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m microseg "$@"\n')
        shim.chmod(0o755)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("COLUMNS", "LINES", "MICROSEG_DEBUG") and not key.startswith("PYTEST")
        }
        self.env.update(
            PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONPATH=str(src),
            PYTHONUNBUFFERED="1",
            HOME=str(self.directory / ".home"),
            XDG_DATA_HOME=str(self.directory / ".home" / "data"),
            MICROSEG_DATABASE_URL=f"sqlite:///{self.directory / '.home' / 'microseg.db'}",
            MICROSEG_FLOW_STORE=str(self.directory / ".home" / "flows"),
            MICROSEG_AUTHOR="andreas",
            TERM="dumb",
        )

    def run(self, command: str) -> tuple[int, list[str]]:
        completed = subprocess.run(
            ["bash", "-c", f"{command}\n"],
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        return completed.returncode, completed.stdout.splitlines()

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def check_command(command: Command, masks: list[str], code: int, output: list[str]) -> str | None:
    """A readable report of how `command` failed, or None when its output fits."""
    expected = _normalise(command.expected, masks)
    actual = _normalise(output, masks)
    problems = []
    if code not in (0, 1):
        problems.append(f"exit status {code}")
    elif code != 0 and expected == [ELLIPSIS]:
        problems.append(f"exit status {code} (its output is elided, so it must succeed)")
    if not output_matches(expected, actual):
        problems.append("output differs")
    if not problems:
        return None
    report = [f"README.md:{command.line}: $ {command.text}  -- {', '.join(problems)}"]
    report += ["  expected:"] + [f"    {line}" for line in expected]
    report += ["  actual:"] + [f"    {line}" for line in actual]
    return "\n".join(report)
