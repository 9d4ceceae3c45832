"""`--help` reads the same everywhere: commands grouped by what they work on, parameters
named by what they are (no `{policy}`, `<str>` or `<list[str]>`), `-d` wherever `--device`."""

from __future__ import annotations

import re

import pytest

from microseg.cli.app import PANELS, root_command


def _commands():
    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))
        yield path, command

    yield from walk(root_command(), ())


COMMANDS = [path for path, _ in _commands()]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "microseg")
def test_help_has_no_python_type_placeholders(run_cli, path):
    result = run_cli(*path, "--help")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert not re.search(r"<(str|int|float|bool|path|list\[[a-z]+\])>", text), text
    usage = text.splitlines()[0]
    assert usage.startswith("Usage: microseg") and "{" not in usage, usage


def test_every_device_option_has_the_short_form():
    with_device = [
        (path, parameter.opts)
        for path, command in _commands()
        for parameter in command.params
        if "--device" in parameter.opts
    ]
    assert len(with_device) >= 4
    assert all("-d" in opts for _, opts in with_device), with_device


def test_every_command_is_under_a_heading_in_order(run_cli):
    root = root_command()
    missing = [
        name for name, command in root.commands.items() if command.rich_help_panel not in PANELS
    ]
    assert missing == []
    text = run_cli("--help").stdout
    headings = [
        line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")
    ]
    assert headings == ["Options", *PANELS]
    assert "\nCommands:" not in text


@pytest.mark.parametrize("words", [[], ["sessions"], ["change"], ["workspace"]])
def test_a_command_group_without_a_command_prints_its_help_not_an_error(run_cli, words):
    result = run_cli(*words)
    assert result.exit_code == 1  # nothing was done: a script sees it
    assert result.stderr.startswith(f"Usage: {' '.join(['microseg', *words])} [OPTIONS] COMMAND")
    assert "error:" not in result.stderr and "(see: " not in result.stderr
    assert "Commands" in result.stderr or "Getting started" in result.stderr
