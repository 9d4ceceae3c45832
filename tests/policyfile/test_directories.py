"""One rule for what a directory is, in every command: one merged policy, or a collection of
standalone policies (two or more top-level files define `policies:`), which only `validate`
takes whole and every other command refuses, naming its members."""

from __future__ import annotations

import shutil

import pytest

from microseg.policyfile import collection_members, load_policy, standalone_policies
from support import EXAMPLES

COLLECTION_MESSAGE = "a collection of 5 standalone policies (home-lab-discovery.yaml, home-lab-dns-ntp.yaml, home-lab-monitor.yaml, home-lab.yaml, lint-findings.yaml), not one policy"


@pytest.mark.parametrize(
    "args",
    [
        ("compile", "{examples}", "-d", "andreasm-720xp-home"),
        ("lint", "{examples}"),
        ("fmt", "{examples}"),
        ("import", "{examples}"),
        ("check", "{examples}", "--from", "172.18.6.138", "--to", "10.100.99.51", "--port", "22"),
        ("diff", "{examples}", "{examples}/home-lab.yaml"),
        (
            "whatif",
            "--base",
            "{examples}",
            "--candidate",
            "{examples}/home-lab.yaml",
            "--sessions",
            "{examples}/seed-lab-sessions.csv",
        ),
        ("recommend", "{examples}", "--sessions", "{examples}/seed-lab-sessions.csv"),
    ],
    ids=lambda args: args[0],
)
def test_every_command_refuses_the_examples_collection_naming_its_members(
    run_cli, tmp_path, monkeypatch, args
):
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    result = run_cli(*(arg.format(examples=EXAMPLES) for arg in args))
    assert result.exit_code == 1, result.stdout + result.stderr
    assert f"  {EXAMPLES}: {COLLECTION_MESSAGE}" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_checks_each_member_of_the_collection(run_cli):
    result = run_cli("validate", str(EXAMPLES))
    assert result.exit_code == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        f"{EXAMPLES}/home-lab-discovery.yaml",
        f"{EXAMPLES}/home-lab-dns-ntp.yaml",
        f"{EXAMPLES}/home-lab-monitor.yaml",
        f"{EXAMPLES}/home-lab.yaml",
        f"{EXAMPLES}/lint-findings.yaml",
    ]


def test_a_directory_with_one_policy_file_is_one_merged_policy(tmp_path):
    shutil.copy(EXAMPLES / "home-lab.yaml", tmp_path / "policy.yaml")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "groups.yaml").write_text(
        "groups:\n  - name: extra\n    prefixes: [192.0.2.0/24]\n"
    )
    assert collection_members(tmp_path) == []
    assert "extra" in {group.name for group in load_policy(tmp_path).groups}


def test_nested_collections_are_expanded_by_validate(tmp_path):
    for name in ("home-lab.yaml", "home-lab-dns-ntp.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
        (tmp_path / "site-b").mkdir(exist_ok=True)
        shutil.copy(EXAMPLES / name, tmp_path / "site-b" / name)
    assert standalone_policies(tmp_path) == [
        tmp_path / "home-lab-dns-ntp.yaml",
        tmp_path / "home-lab.yaml",
        tmp_path / "site-b" / "home-lab-dns-ntp.yaml",
        tmp_path / "site-b" / "home-lab.yaml",
    ]
