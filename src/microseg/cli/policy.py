"""Policy-as-code commands: validate, schema, fmt."""

from __future__ import annotations

import typer

from microseg.cli.app import POLICY_FILES, app
from microseg.cli.common import (
    JSON_OPTION_HELP,
    POLICY_HELP,
    console,
    emit_json,
    output_option,
    policy_path,
    resolve_policy,
    section_count,
    write_output,
)
from microseg.model import PolicyError


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
    and each top-level file, and each top-level subdirectory, is checked on its own. Every
    other command refuses a collection and names its members.
    Example: microseg validate examples/
    """
    from microseg.policyfile import load_policy, standalone_policies

    path = policy_path(path_text)
    results: dict[str, dict[str, int]] = {}
    problems = []
    for member in standalone_policies(path):
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
        counts = ", ".join(section_count(s, n) for s, n in summary.items() if n)
        console.print(f"{name}: valid ({counts or 'no objects'})", markup=False)


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
    from microseg.policyfile import policy_schema_json

    typer.echo(policy_schema_json(), nl=False)


@app.command(rich_help_panel=POLICY_FILES)
def fmt(
    policy: str = typer.Argument(..., help=POLICY_HELP),
    output: str | None = output_option("-o", "--output", help_text="Write here instead of stdout."),
) -> None:
    """Print a policy in canonical form (sorted, defaults omitted, byte-stable).

    Example: microseg fmt examples/home-lab.yaml
    """
    from microseg.policyfile import dump_policy

    text = dump_policy(resolve_policy(policy))
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_output(output, text)
