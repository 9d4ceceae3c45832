"""Policy-as-code commands: validate, schema, fmt."""

from __future__ import annotations

from pathlib import Path

import typer

from microseg.cli.app import app
from microseg.cli.common import JSON_OPTION_HELP, POLICY_HELP, console, emit_json, resolve_policy
from microseg.model import PolicyError
from microseg.policyfile import dump_policy, load_policy, policy_files, policy_schema_json


def policy_summary(policy_set) -> dict[str, int]:
    from microseg.model import SECTIONS

    return {section: len(getattr(policy_set, section)) for section in SECTIONS}


@app.command()
def validate(
    path: Path = typer.Argument(..., help="Policy file or directory of YAML files."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Check a policy: every problem, with file:line:column. Exit 1 if any.

    Example: microseg validate examples/
    """
    try:
        policy_set = _load_each(path)
    except PolicyError as error:
        if as_json:
            emit_json({"valid": False, "problems": [_problem_json(p) for p in error.problems]})
            raise typer.Exit(1) from None
        raise
    if as_json:
        emit_json({"valid": True, "objects": policy_summary(policy_set)})
        return
    counts = ", ".join(
        f"{n} {s.replace('_', ' ')}" for s, n in policy_summary(policy_set).items() if n
    )
    console.print(f"{path}: valid ({counts})")


def _load_each(path: Path):
    """A directory of examples is several policies: validate a directory as one merged policy
    unless it holds separate top-level policies, which `validate` checks one by one."""
    if path.is_dir() and any(p.parent == path for p in policy_files(path)):
        files = [p for p in policy_files(path) if p.parent == path]
        if len(files) > 1 and not (path / ".microseg-merge").exists():
            problems = []
            last = None
            for file in files:
                try:
                    last = load_policy(file)
                except PolicyError as error:
                    problems.extend(error.problems)
            if problems:
                raise PolicyError(problems)
            return last
    return load_policy(path)


def _problem_json(problem) -> dict:
    return {
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "object": problem.object,
        "field": problem.field,
        "message": problem.message,
    }


@app.command()
def schema() -> None:
    """Print the JSON Schema of policy files (for editors).

    Example: microseg schema > microseg-policy.schema.json
    """
    typer.echo(policy_schema_json(), nl=False)


@app.command()
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
        output.write_text(text, encoding="utf-8")
