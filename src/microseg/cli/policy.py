"""Policy-as-code commands: validate, schema, fmt."""

from __future__ import annotations

from pathlib import Path

import typer

from microseg.cli.app import POLICY_FILES, app
from microseg.cli.common import (
    JSON_OPTION_HELP,
    POLICY_HELP,
    console,
    emit_json,
    policy_path,
    resolve_policy,
    write_output,
)
from microseg.model import PolicyError
from microseg.policyfile import (
    dump_policy,
    load_policy,
    policy_files,
    policy_schema_json,
    read_policy_source,
)


def policy_summary(policy_set) -> dict[str, int]:
    from microseg.model import SECTIONS

    return {section: len(getattr(policy_set, section)) for section in SECTIONS}


@app.command(rich_help_panel=POLICY_FILES)
def validate(
    path_text: str = typer.Argument(
        ..., metavar="PATH", help="Policy file or directory of YAML files."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Check a policy: every problem, with file:line:column. Exit 1 if any.

    A directory is one policy, its files merged, unless two or more of its top-level files
    each define `policies:`: then it is a collection of separate policies (like examples/),
    and each top-level file, and each top-level subdirectory (merged), is checked on its own.
    Example: microseg validate examples/
    """
    path = policy_path(path_text)
    results: dict[str, dict[str, int]] = {}
    problems = []
    for member in _policies_in(path):
        try:
            results[str(member)] = policy_summary(load_policy(member))
        except PolicyError as error:
            problems += error.problems
    if problems:
        if as_json:
            emit_json({"valid": False, "problems": [_problem_json(p) for p in problems]})
            raise typer.Exit(1)
        raise PolicyError(problems)
    if as_json:
        emit_json({"valid": True, "policies": results})
        return
    for name, summary in results.items():
        counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in summary.items() if n)
        console.print(f"{name}: valid ({counts})", markup=False)


def _policies_in(path: Path) -> list[Path]:
    """The policies `validate PATH` checks: PATH itself, or each member of a collection (a
    top-level file, or a top-level subdirectory merged as one policy)."""
    if not path.is_dir():
        return [path]
    files = policy_files(path)
    top_level = [p for p in files if p.parent == path]
    with_policies = [p for p in top_level if "policies" in read_policy_source(p).sections]
    if len(with_policies) < 2:
        return [path]
    subdirectories = sorted({path / p.relative_to(path).parts[0] for p in files} - set(top_level))
    return top_level + subdirectories


def _problem_json(problem) -> dict:
    return {
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "object": problem.object,
        "field": problem.field,
        "message": problem.message,
    }


@app.command(rich_help_panel=POLICY_FILES)
def schema() -> None:
    """Print the JSON Schema of policy files (for editors).

    Example: microseg schema > microseg-policy.schema.json
    """
    typer.echo(policy_schema_json(), nl=False)


@app.command(rich_help_panel=POLICY_FILES)
def fmt(
    policy: str = typer.Argument(..., help=POLICY_HELP),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write here instead of stdout."
    ),
) -> None:
    """Print a policy in canonical form (sorted, defaults omitted, byte-stable).

    Example: microseg fmt examples/home-lab.yaml
    """
    text = dump_policy(resolve_policy(policy))
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_output(output, text)
