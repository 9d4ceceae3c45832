"""Start-up stays light (issue 14): commands load lazily, `--help` still lists every one, the
heavy libraries stay out of commands that do not need them, and shell completion works.
Behaviour, not timing: bench/startup.py measures the time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from microseg.cli.app import ALL_MODULES, COMMAND_MODULES, PANELS, root_command
from support import EXAMPLES, cli_command, cli_env

HEAVY = (
    "sqlalchemy",
    "alembic",
    "duckdb",
    "pyarrow",
    "numpy",
    "pydantic",
    "ruamel",
    "yaml",
    "pyspark",
    "py4j",
    "numba",
    "llvmlite",
)


def _modules_after(code: str) -> list[str]:
    """The heavy top-level packages a fresh interpreter has imported after running `code`."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _run_main(*args: str) -> str:
    return (
        "from microseg.cli import main\n"
        f"try:\n    main({list(args)!r})\nexcept SystemExit as done:\n"
        "    assert not done.code, done.code"
    )


def test_help_lists_every_command_the_modules_register(run_cli):
    registered = set(root_command().commands)
    assert registered == set(COMMAND_MODULES)
    listed = {
        line.split()[0]
        for line in run_cli("--help").stdout.splitlines()
        if line.startswith("  ") and not line.lstrip().startswith("-")
    }
    assert registered <= listed


@pytest.mark.parametrize("name", sorted(COMMAND_MODULES))
def test_a_command_is_registered_by_the_module_the_table_names(name):
    module = COMMAND_MODULES[name]
    modules = ALL_MODULES if module == "*" else (module,)
    code = (
        "import importlib\nfrom microseg.cli.app import _registered\n"
        f"print({name!r} in _registered({modules!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["True"], done.stderr


def test_importing_the_cli_imports_no_database_arrow_or_model_library():
    assert _modules_after("import microseg.cli") == []


def test_version_and_help_import_no_heavy_library():
    assert _modules_after(_run_main("--version")) == []
    assert _modules_after(_run_main("--help")) == []


def test_validating_a_file_never_loads_the_store_or_flow_libraries():
    loaded = _modules_after(_run_main("validate", str(EXAMPLES / "home-lab.yaml")))
    assert "pydantic" in loaded  # the command does its work
    assert not {"sqlalchemy", "alembic", "duckdb", "pyarrow"} & set(loaded), loaded


def test_compiling_a_file_reads_it_without_the_dumper_or_the_store(tmp_path):
    # ruamel is the canonical dumper's: `compile FILE` only reads (bench/cli_compile.py).
    output = tmp_path / "leaf.eos"
    command = ("compile", str(EXAMPLES / "home-lab.yaml"), "-d", "andreasm-720xp-home")
    loaded = _modules_after(_run_main(*command, "-o", str(output)))
    assert output.read_text().startswith("traffic-policies")
    assert "yaml" in loaded and "pydantic" in loaded  # the command does its work
    assert not {"ruamel", "sqlalchemy", "alembic", "duckdb", "pyarrow", "numpy"} & set(loaded)


def test_only_a_session_table_loads_numba(tmp_path):
    """The session merge and the segment writer's orientation are compiled
    (flows/merge_loops.py, orient_loops.py): reading sessions, importing the session schema
    or the collector's module (the monitor's metrics do) must not pay numba's start-up; a
    collector's table does."""
    listing = _run_main("sessions", "list", "--store", str(tmp_path), "--json")
    assert not {"numba", "llvmlite"} & set(_modules_after(listing))
    assert "numba" not in _modules_after("import microseg.flows.sessions, microseg.flows.flowstore")
    assert "numba" not in _modules_after("import microseg.flows.collector, microseg.flows.writer")
    table = "from microseg.flows.sessions import SessionTable\nSessionTable()"
    assert "numba" in _modules_after(table)


def test_help_keeps_its_headings_in_order(run_cli):
    text = run_cli("--help").stdout
    headings = [line[:-1] for line in text.splitlines() if line.endswith(":") and line[0] != " "]
    assert headings[0] == "Options"
    assert [h for h in headings if h in PANELS] == list(PANELS)


def test_unknown_command_is_a_user_error(run_cli):
    result = run_cli("compil")
    assert result.exit_code == 1
    assert "No such command 'compil'" in result.stderr


def test_a_mistyped_command_gets_the_commands_it_is_close_to(run_cli):
    """Commands load lazily, so Typer's suggestion (from the loaded ones) had none to offer."""
    result = run_cli("sesions", "list")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: No such command 'sesions'. Did you mean 'sessions'? (see: microseg --help)\n"
    )
    nowhere_close = run_cli("xyz")
    assert "Did you mean" not in nowhere_close.stderr


def test_a_usage_error_points_at_the_help_of_its_own_command(run_cli):
    missing = run_cli("check", "examples/home-lab.yaml", "--from", "172.18.6.138")
    assert missing.stderr == "error: Missing option '--to'. (see: microseg check --help)\n"
    typo = run_cli("workspace", "creat", "w1")
    assert typo.stderr.endswith("Did you mean 'create'? (see: microseg workspace --help)\n")


def test_shell_completion_offers_the_commands():
    # What the bash script `--install-completion` writes asks microseg for (typer's protocol).
    done = subprocess.run(
        cli_command(),
        env=cli_env(_MICROSEG_COMPLETE="complete_bash", COMP_WORDS="microseg comp", COMP_CWORD="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["compile"], done.stderr


def test_shell_completion_offers_a_subcommand_and_options():
    def complete(words: str, index: int) -> list[str]:
        env = cli_env(_MICROSEG_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(index))
        done = subprocess.run(cli_command(), env=env, capture_output=True, text=True, timeout=120)
        return done.stdout.split()

    assert "build" in complete("microseg workspace b", 2)
    assert "--device" in complete("microseg compile x.yaml --dev", 3)


def test_install_completion_writes_the_bash_script(tmp_path):
    env = cli_env(HOME=str(tmp_path), _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    done = subprocess.run(
        cli_command("--install-completion", "bash"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    bashrc = (tmp_path / ".bashrc").read_text()
    script = tmp_path / ".bash_completions" / "microseg.sh"
    assert f"source '{script}'" in bashrc or f"source {script}" in bashrc, bashrc
    assert "_MICROSEG_COMPLETE=complete_bash" in script.read_text()


def test_a_group_is_whole_on_a_later_run_in_the_same_process():
    """`import` converts the store's commands before `compile` adds `workspace build` to the
    workspace group; a later run in the same (fresh) process must still find `workspace
    build` (it said "No such command 'build'")."""
    code = _run_main("import", "--help") + "\n" + _run_main("workspace", "build", "--help")
    done = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Usage: microseg workspace build" in done.stdout
