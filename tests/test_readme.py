"""The README is executed: every ```console transcript runs and its output must match.

The rules (sessions per `## ` section, `...`, masks) are in `readme_harness`'s docstring
and in the README's last section. A failure names the README line of the command."""

from __future__ import annotations

import pytest

from readme_harness import Command, Session, check_command, output_matches, parse_readme
from support import ROOT, SRC

SECTIONS = parse_readme((ROOT / "README.md").read_text(encoding="utf-8"))


@pytest.mark.parametrize("section", SECTIONS, ids=[s.title for s in SECTIONS])
def test_readme_section_transcripts_run_as_shown(section):
    session = Session(ROOT, SRC)
    failures = []
    try:
        for block in section.blocks:
            if block.skip:
                continue
            for command in block.commands:
                code, output = session.run(command.text)
                failure = check_command(command, block.masks, code, output)
                if failure:
                    failures.append(failure)
    finally:
        session.close()
    assert not failures, "\n\n".join(failures)


def test_the_readme_has_transcripts_in_every_section_that_shows_commands():
    titles = {section.title for section in SECTIONS}
    for title in (
        "Concepts",
        "Versioned store: revisions and workspaces",
        "Evaluator: check, what-if, lint",
        "The seed lab, step by step",
    ):
        assert title in titles


# The harness itself: it must be able to fail.


def test_ellipsis_line_matches_any_number_of_lines():
    assert output_matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert output_matches(["a", "...", "d"], ["a", "d"])
    assert not output_matches(["a", "...", "d"], ["a", "b", "c"])
    assert output_matches(["..."], [])


def test_ellipsis_inside_a_line_matches_text_within_that_line_only():
    assert output_matches(["rev 2 ... andreas"], ["rev 2 2026-11-26 06:02:11 andreas"])
    assert not output_matches(["rev 2 ... andreas"], ["rev 2", "x andreas"])
    assert not output_matches(["a.b"], ["axb"])  # no regular expressions by accident


def test_different_output_fails_with_the_readme_line():
    command = Command(42, "microseg log", ["1 problem"])
    report = check_command(command, [], 1, ["2 problems"])
    assert report is not None and report.startswith("README.md:42: $ microseg log")


def test_internal_error_fails_even_when_output_is_elided():
    command = Command(7, "microseg x", ["..."])
    assert check_command(command, [], 70, ["internal error: ..."]) is not None
    assert check_command(command, [], 1, ["error: x"]) is not None
    assert check_command(command, [], 0, ["anything"]) is None


def test_masks_apply_to_both_sides_and_trailing_space_is_ignored():
    command = Command(1, "microseg log", ["2  2026-11-26 06:02:11  andreas"])
    mask = [r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"]
    assert check_command(command, mask, 0, ["2  2030-01-01 00:00:00  andreas   ", ""]) is None
    assert check_command(command, mask, 0, ["2  2030-01-01 00:00:00  root"]) is not None


def test_parser_reads_continuations_directives_and_sections():
    text = "\n".join(
        [
            "## One",
            "<!-- readme-test: mask \\d+ -->",
            "```console",
            "$ cat > f.yaml <<'EOF'",
            "> groups: []",
            "> EOF",
            "$ microseg validate f.yaml",
            "error: 1 problem",
            "```",
            "```sh",
            "make demo",
            "```",
            "## Two",
            "<!-- readme-test: skip needs root -->",
            "```console",
            "$ make test",
            "```",
        ]
    )
    one, two = parse_readme(text)
    assert [c.text for c in one.blocks[0].commands] == [
        "cat > f.yaml <<'EOF'\ngroups: []\nEOF",
        "microseg validate f.yaml",
    ]
    assert one.blocks[0].commands[1].expected == ["error: 1 problem"]
    assert one.blocks[0].masks == ["\\d+"]
    assert two.blocks[0].skip == "needs root"


def test_a_directive_must_sit_right_before_a_console_block():
    with pytest.raises(ValueError, match=r"README\.md:2"):
        parse_readme("<!-- readme-test: mask x -->\ntext\n```console\n$ true\n```\n")


def test_every_transcript_in_the_readme_is_a_console_block_that_runs():
    """A `$ command` shown in any other fence would never be checked: it must be console."""
    unrun = []
    fence = None
    for number, line in enumerate((ROOT / "README.md").read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
        elif fence not in (None, "console") and line.startswith("$ "):
            unrun.append(f"README.md:{number}: {line}")
    assert unrun == []
