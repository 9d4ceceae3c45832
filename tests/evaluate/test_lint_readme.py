"""The README's `microseg lint` examples are what the command prints, byte for byte."""

from __future__ import annotations

import re

import pytest

from support import EXAMPLES

README = (EXAMPLES.parent / "README.md").read_text()
SHOWN = re.findall(r"```\n\$ microseg lint (\S+)\n(.*?)```", README, flags=re.DOTALL)


def test_the_readme_shows_lint_examples():
    assert [path for path, _ in SHOWN] == [
        "examples/home-lab.yaml",
        "examples/lint-findings.yaml",
    ]


@pytest.mark.parametrize(("path", "output"), SHOWN, ids=[path for path, _ in SHOWN])
def test_readme_lint_output_is_true(run_cli, path, output):
    result = run_cli("lint", str(EXAMPLES.parent / path))
    assert result.exit_code == 1
    assert result.stdout == output
