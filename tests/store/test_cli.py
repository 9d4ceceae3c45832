"""The store commands end to end, as a user runs them, on a SQLite file named by
MICROSEG_DATABASE_URL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from microseg.cli.demo import DemoContext
from microseg.store import head_schema_revision

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SEED_STAGES = ("home-lab-dns-ntp.yaml", "home-lab-monitor.yaml", "home-lab.yaml")

NARROW_WEB = """\
groups:
  - name: printers
    prefixes: [10.100.7.0/24]
rules:
  - name: clients_to_webservers
    description: HTTP to webservers
    sources: [wifi_clients]
    destinations: [web01_web02]
    services: [HTTP]
"""

BROKEN = """\
groups:
  - name: printers
    prefixes: [10.100.7.1/24]
rules:
  - name: clients_to_webservers
    sources: [wifi_clients, nothere]
    destinations: [web01_web02]
    services: [HTTP]
"""


@pytest.fixture
def database(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data" / "microseg.db"
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("MICROSEG_AUTHOR", "andreas")
    return path


@pytest.fixture
def seeded(database, run_cli):
    for file in SEED_STAGES:
        assert run_cli("import", str(EXAMPLES / file), "-m", f"stage {file}").exit_code == 0
    return database


def _json(result) -> object:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_db_init_creates_the_database_and_is_idempotent(database, run_cli):
    first = run_cli("db", "init")
    assert first.exit_code == 0, first.stderr
    assert f"schema at revision {head_schema_revision()}" in first.stdout
    assert database.exists()
    assert run_cli("db", "init").exit_code == 0
    assert _json(run_cli("log", "--json")) == []


def test_importing_the_seed_stages_makes_three_revisions(seeded, run_cli):
    log = _json(run_cli("log", "--json"))
    assert [(r["id"], r["parent"], r["author"], r["message"]) for r in log] == [
        (3, 2, "andreas", "stage home-lab.yaml"),
        (2, 1, "andreas", "stage home-lab-monitor.yaml"),
        (1, None, "andreas", "stage home-lab-dns-ntp.yaml"),
    ]
    header, newest, *_ = run_cli("log").stdout.splitlines()
    assert header.split() == ["rev", "parent", "created", "(UTC)", "author", "message"]
    assert newest.startswith("3    2 ")
    assert newest.endswith("  andreas  stage home-lab.yaml")


def test_export_of_an_import_is_byte_identical_to_fmt(seeded, run_cli, tmp_path):
    for revision, file in enumerate(SEED_STAGES, 1):
        exported = tmp_path / f"rev{revision}.yaml"
        assert run_cli("export", "-r", str(revision), "-o", str(exported)).exit_code == 0
        formatted = run_cli("fmt", str(EXAMPLES / file))
        assert exported.read_text(encoding="utf-8") == formatted.stdout
        assert run_cli("fmt", f"rev:{revision}").stdout == formatted.stdout
    assert run_cli("export").stdout == run_cli("fmt", str(EXAMPLES / "home-lab.yaml")).stdout


def test_a_failing_import_writes_nothing(database, run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN, encoding="utf-8")
    result = run_cli("import", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:3:16: group 'printers' prefixes.0" in result.stderr
    assert "Traceback" not in result.stderr
    assert "no store at" in run_cli("log", "--json").stderr  # not even an empty one
    assert run_cli("import", str(EXAMPLES / "home-lab.yaml")).exit_code == 0
    assert run_cli("import", str(bad)).exit_code == 1
    assert [r["id"] for r in _json(run_cli("log", "--json"))] == [1]


def test_importing_the_heads_own_policy_again_says_so_and_makes_no_revision(seeded, run_cli):
    home_lab = str(EXAMPLES / "home-lab.yaml")
    again = run_cli("import", home_lab, "-m", "again")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == f"{home_lab} is unchanged from revision 3: no revision made\n"
    assert _json(run_cli("import", home_lab, "--json")) == {
        "revision": 3,
        "changed": False,
        "objects": 24,
    }
    assert [r["id"] for r in _json(run_cli("log", "--json"))] == [3, 2, 1]
    changed = _json(run_cli("import", str(EXAMPLES / "home-lab-dns-ntp.yaml"), "--json"))
    assert changed == {"revision": 4, "changed": True, "objects": 13}


def test_a_workspace_from_create_to_submit(seeded, run_cli, tmp_path):
    change = tmp_path / "narrow-web.yaml"
    change.write_text(NARROW_WEB, encoding="utf-8")
    assert run_cli("workspace", "create", "narrow-web").stdout == (
        "workspace 'narrow-web' created on revision 3\n"
    )
    [listed] = _json(run_cli("workspace", "list", "--json"))
    assert (listed["name"], listed["base"], listed["state"], listed["changes"]) == (
        "narrow-web",
        3,
        "open",
        0,
    )
    assert run_cli("workspace", "set", "narrow-web", "--file", str(change)).exit_code == 0
    diff = _json(run_cli("workspace", "diff", "narrow-web", "--json"))
    assert [(c["section"], c["name"], c["change"]) for c in diff["changes"]] == [
        ("groups", "printers", "added"),
        ("rules", "clients_to_webservers", "changed"),
    ]
    assert diff["changes"][1]["fields"] == [
        {"field": "sources", "before": "any", "after": ["wifi_clients"]}
    ]
    assert run_cli("workspace", "diff", "narrow-web").stdout == (
        "workspace 'narrow-web' (open) on revision 3: 2 objects changed\n"
        "+ groups/printers\n"
        '    prefixes: ["10.100.7.0/24"]\n'
        "~ rules/clients_to_webservers\n"
        '    sources: "any" -> ["wifi_clients"]\n'
    )
    shown = run_cli("workspace", "show", "narrow-web")
    assert shown.stdout == run_cli("fmt", "ws:narrow-web").stdout
    assert "  - name: printers\n    prefixes:\n      - 10.100.7.0/24\n" in shown.stdout
    summary = _json(run_cli("workspace", "show", "narrow-web", "--json"))
    assert summary["objects"]["groups"] == 6
    assert summary["workspace"]["changes"] == 2
    deleted = run_cli("workspace", "delete", "narrow-web", "groups", "printers")
    assert deleted.exit_code == 0, deleted.stderr
    submitted = run_cli("workspace", "submit", "narrow-web", "-m", "web only from wifi")
    assert submitted.stdout == "workspace 'narrow-web' submitted as revision 4\n"
    newest = _json(run_cli("log", "--json", "-n", "1"))
    assert [(r["id"], r["message"]) for r in newest] == [(4, "web only from wifi")]
    exported = run_cli("export").stdout
    assert "printers" not in exported
    assert _json(run_cli("workspace", "list", "--json")) == []
    assert _json(run_cli("workspace", "list", "--all", "--json"))[0]["submitted_revision"] == 4


def test_an_invalid_workspace_file_is_refused_with_its_lines(seeded, run_cli, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN, encoding="utf-8")
    run_cli("workspace", "create", "w")
    result = run_cli("workspace", "set", "w", "--file", str(broken))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: workspace 'w': change refused, nothing written: 2 problems in policy",
        f"  {broken}:3:16: group 'printers' prefixes.0: 10.100.7.1/24 has host bits set "
        "(did you mean 10.100.7.0/24?)",
        f"  {broken}:6:29: rule 'clients_to_webservers' sources.1: unknown group 'nothere'",
    ]
    broken.write_text("groups:\n  - name: x\n    colour: red\n", encoding="utf-8")
    result = run_cli("workspace", "set", "w", "--file", str(broken))
    assert f"{broken}:3:5: group 'x' colour: unknown key" in result.stderr
    broken.write_text("grups:\n  - name: x\n", encoding="utf-8")
    result = run_cli("workspace", "set", "w", "--file", str(broken))
    assert result.exit_code == 1
    assert f"{broken}:1:1: unknown section 'grups'" in result.stderr
    assert _json(run_cli("workspace", "diff", "w", "--json"))["changes"] == []


def test_a_conflicting_submit_fails_and_an_abandoned_workspace_stays_closed(
    seeded, run_cli, tmp_path
):
    change = tmp_path / "narrow-web.yaml"
    change.write_text(NARROW_WEB, encoding="utf-8")
    for name in ("first", "second"):
        run_cli("workspace", "create", name)
        assert run_cli("workspace", "set", name, "-f", str(change)).exit_code == 0
    assert run_cli("workspace", "submit", "first").exit_code == 0
    conflict = run_cli("workspace", "submit", "second")
    assert conflict.exit_code == 1
    assert "groups/printers, rules/clients_to_webservers" in conflict.stderr
    assert "Nothing was written" in conflict.stderr
    assert [r["id"] for r in _json(run_cli("log", "--json"))] == [4, 3, 2, 1]
    assert run_cli("workspace", "abandon", "second").exit_code == 0
    closed = run_cli("workspace", "submit", "second")
    assert closed.exit_code == 1
    assert "workspace 'second' was abandoned" in closed.stderr


def test_user_errors_exit_1_with_a_message(database, run_cli):
    assert run_cli("db", "init").exit_code == 0
    empty_export = run_cli("export")
    assert (empty_export.exit_code, empty_export.stderr) == (
        1,
        "error: the store has no revisions yet: microseg import FILE first\n",
    )
    assert "no workspace 'nothere'" in run_cli("workspace", "show", "nothere").stderr
    assert "no revision 5" in run_cli("fmt", "rev:5").stderr
    run_cli("import", str(EXAMPLES / "home-lab.yaml"))
    run_cli("workspace", "create", "w")
    unknown = run_cli("workspace", "delete", "w", "gropus", "x")
    assert unknown.exit_code == 1
    assert "unknown section 'gropus'" in unknown.stderr


def test_the_store_commands_run_as_a_real_process(tmp_path):
    from support import cli_command, cli_env

    env = cli_env(MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'microseg.db'}")
    imported = subprocess.run(
        cli_command("import", str(EXAMPLES / "home-lab.yaml"), "-m", "seed"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.endswith("as revision 1 (24 objects)\n")


def test_the_demo_step_stores_the_seed_stages_and_shows_a_workspace_diff(tmp_path, capsys):
    from microseg.cli.store import _store_demo

    _store_demo(DemoContext(workdir=tmp_path, examples=EXAMPLES))
    output = capsys.readouterr().out
    assert "imported home-lab.yaml as revision 3" in output
    assert "  rev 1  demo  DNS and NTP for the wifi clients (rule72, rule73)" in output
    assert output.endswith(
        "workspace 'web-only-from-wifi' (open) on revision 3: 1 object changed\n"
        "~ rules/clients_to_webservers\n"
        '    sources: "any" -> ["wifi_clients"]\n'
    )
    assert (tmp_path / "microseg.db").exists()


def test_export_to_a_file_that_cannot_be_written_is_a_user_error(seeded, run_cli, tmp_path):
    output = tmp_path / "missing" / "export.yaml"
    result = run_cli("export", "-o", str(output))
    assert result.exit_code == 1, result.stderr
    assert f"cannot write {output}" in result.stderr


def test_a_workspace_file_with_a_nameless_or_twice_given_object_is_located(
    seeded, run_cli, tmp_path
):
    run_cli("workspace", "create", "w")
    changes = tmp_path / "changes.yaml"
    changes.write_text(
        "rules:\n  - {sources: [wifi_clients], destinations: any, services: any}\n"
        "  - name: r2\n    bogus: 1\n    sources: [x]\n    destinations: any\n    services: any\n",
        encoding="utf-8",
    )
    result = run_cli("workspace", "set", "w", "--file", str(changes))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: workspace 'w': change refused, nothing written: 3 problems in policy",
        f"  {changes}:2:5: rule '#1': required field 'name' is missing",
        f"  {changes}:4:5: rule 'r2' bogus: unknown key (not a field of this object)",
        f"  {changes}:5:15: rule 'r2' sources.0: unknown group 'x'",
    ]
    changes.write_text("groups:\n  - name: g\n  - name: g\n", encoding="utf-8")
    result = run_cli("workspace", "set", "w", "--file", str(changes))
    assert result.exit_code == 1
    assert f"{changes}:3:11: group 'g' name: duplicate name: defined 2 times" in result.stderr
    assert _json(run_cli("workspace", "diff", "w", "--json"))["changes"] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["log"],
        ["export"],
        ["workspace", "list"],
        ["workspace", "show", "w"],
        ["change", "list"],
        ["drift"],
        ["user", "list"],
        ["fmt", "rev:1"],
        ["change", "four-eyes"],
        ["workspace", "build", "w"],
    ],
)
def test_a_read_of_a_store_that_is_not_there_creates_none(run_cli, tmp_path, monkeypatch, argv):
    # `microseg log` on a mistyped MICROSEG_DATABASE_URL made an empty store there (and its
    # directory) and said "no revisions": the read is refused and nothing is created.
    missing = tmp_path / "nowhere" / "store.db"
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{missing}")
    result = run_cli(*argv)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert f"error: no store at {missing} (microseg db init creates one)" in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert run_cli("db", "init").exit_code == 0 and missing.exists()
