"""validate / fmt / schema / --version from the command line, as a user runs them."""

from __future__ import annotations

import json
import subprocess

from support import EXAMPLES, cli_command, cli_env


def test_validate_examples_directory_is_clean(run_cli):
    result = run_cli("validate", str(EXAMPLES))
    assert result.exit_code == 0, result.stderr
    assert "valid" in result.stdout


def test_an_empty_policy_file_is_said_to_hold_no_objects(run_cli, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = run_cli("validate", str(empty))
    assert result.exit_code == 0 and result.stdout == f"{empty}: valid (no objects)\n"


def test_validate_json_counts_objects(run_cli):
    result = run_cli("validate", str(EXAMPLES / "home-lab.yaml"), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["valid"] is True
    objects = data["policies"][str(EXAMPLES / "home-lab.yaml")]
    assert objects["rules"] == 7 and objects["groups"] == 5


def test_validate_bad_file_exits_1_with_located_problems_and_no_traceback(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n  - name: g\n    prefixes: [10.0.0.300/24]\n")
    result = run_cli("validate", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:3:16: group 'g' prefixes.0" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_validate_json_reports_problems(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n  - name: g\n    prefixes: [10.0.0.1/24]\n")
    result = run_cli("validate", str(bad), "--json")
    assert result.exit_code == 1
    problem = json.loads(result.stdout)["problems"][0]
    assert (problem["line"], problem["column"], problem["object"]) == (3, 16, "group 'g'")


def test_usage_error_exits_1_with_a_message(run_cli):
    result = run_cli("validate", "--no-such-option")
    assert result.exit_code == 1
    assert "No such option" in result.stderr


def test_fmt_is_canonical_and_stable(run_cli, tmp_path):
    first = run_cli("fmt", str(EXAMPLES / "home-lab.yaml"))
    assert first.exit_code == 0
    canonical = tmp_path / "canonical.yaml"
    canonical.write_text(first.stdout)
    second = run_cli("fmt", str(canonical))
    assert second.stdout == first.stdout


def test_schema_is_json_schema_for_every_section(run_cli):
    result = run_cli("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "microseg policy file"
    assert set(schema["properties"]) == {
        "devices",
        "monitor_nodes",
        "domains",
        "categories",
        "groups",
        "services",
        "monitor_objects",
        "redirect_objects",
        "rules",
        "policies",
    }
    assert schema["additionalProperties"] is False


def test_version_from_a_real_process():
    done = subprocess.run(
        cli_command("--version"), env=cli_env(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("microseg ")


def test_rev_argument_must_be_a_number(run_cli):
    result = run_cli("fmt", "rev:abc")
    assert result.exit_code == 1
    assert "rev:N" in result.stderr


def test_validate_examples_checks_each_standalone_policy(run_cli):
    result = run_cli("validate", str(EXAMPLES), "--json")
    assert result.exit_code == 0
    assert sorted(json.loads(result.stdout)["policies"]) == sorted(
        str(p) for p in EXAMPLES.glob("*.yaml")
    )


def test_validate_directory_without_several_policies_is_one_merged_policy(run_cli, tmp_path):
    (tmp_path / "objects.yaml").write_text("groups:\n  - name: web\n    prefixes: [10.0.0.0/24]\n")
    (tmp_path / "rules.yaml").write_text("rules:\n  - name: r\n    sources: [web, ghost]\n")
    result = run_cli("validate", str(tmp_path))
    assert result.exit_code == 1
    assert f"{tmp_path}/rules.yaml:3:20: rule 'r' sources.1: unknown group 'ghost'" in result.stderr


def test_rev_argument_with_a_non_ascii_digit_is_a_user_error(run_cli, tmp_path, monkeypatch):
    # str.isdigit() accepts superscripts and other scripts' digits that int() refuses.
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    for spec in ("rev:²", "rev:", "rev: 1", "rev:+1"):
        result = run_cli("fmt", spec)
        assert result.exit_code == 1, (spec, result.stderr)
        assert "a revision is rev:N with N a number" in result.stderr
    assert not (tmp_path / "store.db").exists()  # refused before opening the store


def test_an_output_file_that_cannot_be_written_is_a_user_error(run_cli, tmp_path):
    # fmt, export and compile write -o FILE the same way: exit 1 naming the file, and a
    # directory in the way is not clobbered.
    home_lab = str(EXAMPLES / "home-lab.yaml")
    (tmp_path / "taken").mkdir()
    for output in (tmp_path / "missing" / "out.txt", tmp_path / "taken"):
        for args in (
            ("fmt", home_lab, "-o", str(output)),
            ("compile", home_lab, "-d", "andreasm-720xp-home", "-o", str(output)),
        ):
            result = run_cli(*args)
            assert result.exit_code == 1, (args, result.stderr)
            assert f"cannot write {output}" in result.stderr
    assert (tmp_path / "taken").is_dir() and not list(tmp_path.glob("**/*.tmp"))
    assert not (tmp_path / "missing").exists()


def test_square_brackets_in_names_and_paths_are_printed_as_written(run_cli, tmp_path):
    # Rich reads `[web]` as a style and `[/x]` as a closing tag: user text must never be
    # markup, or it vanishes from the output or crashes the error report with a traceback.
    folder = tmp_path / "[web]" / "[/x]"
    folder.mkdir(parents=True)
    good = folder / "good.yaml"
    good.write_text("groups:\n  - name: web\n    prefixes: [10.0.0.0/24]\n")
    result = run_cli("validate", str(good))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{good}: valid")
    bad = folder / "bad.yaml"
    bad.write_text('groups:\n  - name: "[/x] [web]"\n    prefixes: [10.0.0.1/24]\n')
    result = run_cli("validate", str(bad))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: 1 problem in policy",
        f"  {bad}:3:16: group '[/x] [web]' prefixes.0: 10.0.0.1/24 has host bits set "
        "(did you mean 10.0.0.0/24?)",
    ]


def test_an_unknown_command_with_brackets_is_a_usage_error(run_cli):
    result = run_cli("[/x]")
    assert result.exit_code == 1
    assert "No such command '[/x]'" in result.stderr


def test_lint_prints_bracketed_names_as_written(run_cli, tmp_path):
    policy = tmp_path / "brackets.yaml"
    policy.write_text(
        'groups:\n  - name: "[web]"\n    prefixes: [10.0.0.0/24]\n'
        '  - name: "[/x]"\n    prefixes: [10.0.1.0/24]\n'
    )
    result = run_cli("lint", str(policy))
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "unused group '[/x]': group [/x] is unused" in result.stdout
    assert "unused group '[web]': group [web] is unused" in result.stdout


def test_validate_collection_checks_its_subdirectories_too(run_cli, tmp_path):
    for name in ("home-lab.yaml", "home-lab-dns-ntp.yaml"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())
    (tmp_path / "site-b").mkdir()
    (tmp_path / "site-b" / "rules.yaml").write_text("rules:\n  - name: r\n    sources: [ghost]\n")
    result = run_cli("validate", str(tmp_path))
    assert result.exit_code == 1
    assert (
        f"{tmp_path}/site-b/rules.yaml:3:15: rule 'r' sources.0: unknown group 'ghost'"
        in result.stderr
    )


def test_fmt_refuses_an_empty_list_instead_of_rewriting_it_to_any(run_cli, tmp_path):
    policy = tmp_path / "open.yaml"
    text = (
        "groups:\n  - {name: g, prefixes: [10.0.0.0/24]}\n"
        "rules:\n  - {name: r, sources: [], destinations: [g], services: any}\n"
    )
    policy.write_text(text)
    output = tmp_path / "formatted.yaml"
    result = run_cli("fmt", str(policy), "-o", str(output))
    assert result.exit_code == 1
    assert f"{policy}:4:24: rule 'r' sources: an empty list is not `any`" in result.stderr
    assert "sources: any" not in result.stdout
    assert not output.exists()
    assert policy.read_text() == text


def test_hostile_numbers_and_scoped_addresses_exit_1_not_70(run_cli, tmp_path):
    policy = tmp_path / "hostile.yaml"
    for text in (
        "policies:\n  - {name: p, id: " + "9" * 5000 + ", domain: d}\n",
        'groups:\n  - {name: h, prefixes: ["::/0"], except_prefixes: ["fe80::1%eth0/128"]}\n',
        "policies:\n  - {name: p, id: true, domain: d}\n",
    ):
        policy.write_text(text)
        for command in ("validate", "compile"):
            result = run_cli(command, str(policy), *(["-d", "x"] if command == "compile" else []))
            assert result.exit_code == 1, (command, text[:40], result.stderr)
            assert f"{policy}:2:" in result.stderr
