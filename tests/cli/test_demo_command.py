"""`microseg demo`, as a newcomer meets it: it says what it will show, fits 100 columns,
counts in proper English, keeps its stores with --keep, and its "try next" advice works."""

from __future__ import annotations

import re
import shlex

import pytest

from microseg.cli.app import DEMO_STEPS
from support import EXAMPLES, ROOT


@pytest.fixture(scope="module")
def kept_demo(tmp_path_factory):
    """One `microseg demo --keep DIR` run from the repository root, shared by the tests."""
    from microseg.cli import main

    keep = tmp_path_factory.mktemp("demo") / "lab"
    capture = pytest.MonkeyPatch()
    capture.chdir(ROOT)
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["demo", "--keep", str(keep)])
                code = 0
            except SystemExit as done:
                code = done.code
    finally:
        capture.undo()
    return keep, code, out.getvalue(), err.getvalue()


def test_demo_says_what_it_will_show_first(kept_demo):
    _, code, out, err = kept_demo
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("microseg demo: the seed lab")
    intro = out[: out.index("─")]
    for _, title, _ in DEMO_STEPS:
        assert f"  {title}\n" in intro


def test_demo_output_fits_100_columns(kept_demo):
    _, _, out, _ = kept_demo
    too_wide = [line for line in out.splitlines() if len(line) > 100]
    assert too_wide == []


def test_demo_counts_in_proper_english(kept_demo):
    _, _, out, _ = kept_demo
    assert "1 device, 1 monitor node, 1 domain, 2 categories" in out
    assert re.search(r"\b1 (devices|rules|policies|findings|sessions|lines)\b", out) is None
    assert "(s)" not in out


def test_demo_keep_leaves_its_store_and_flow_store(kept_demo):
    keep, _, _, _ = kept_demo
    assert (keep / "microseg.db").is_file()
    assert list((keep / "flows" / "segments").glob("*.parquet"))


def test_what_to_try_next_runs_as_printed(kept_demo, run_cli, monkeypatch):
    """Every command the demo suggests at the end works, in the environment it says."""
    _, _, out, _ = kept_demo
    advice = out[out.index("What to try next") :].split("\n", 1)[1]
    monkeypatch.chdir(ROOT)
    variables = {}
    commands = []
    for line in advice.replace("\\\n", " ").splitlines():
        if not line.startswith("  "):
            continue
        words = shlex.split(line)
        if words[:1] == ["export"]:
            name, value = words[1].split("=", 1)
            monkeypatch.setenv(name, value)
        elif len(words) == 1 and re.fullmatch(r"\w+=\S+", words[0]):
            name, value = words[0].split("=", 1)
            variables[name] = value
        elif words[:1] == ["microseg"]:
            commands.append([_expand(word, variables) for word in words[1:]])
    assert variables == {"lab": "examples"}
    assert len(commands) >= 8
    for command in commands:
        result = run_cli(*command)
        assert result.exit_code == 0, (command, result.stdout, result.stderr)


def _expand(word: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], word)


def test_demo_keep_refuses_a_directory_with_files_and_writes_nothing(run_cli, tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    result = run_cli("demo", "--keep", str(tmp_path))
    assert result.exit_code == 1
    assert f"--keep {tmp_path}: exists and is not an empty directory" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert EXAMPLES.is_dir()
