"""Store commands: db init, import, export, log, workspace (issue: foundation / store).

The store is $MICROSEG_DATABASE_URL, else SQLite in the user data dir.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from microseg.cli.app import STORE, app, demo_step
from microseg.cli.common import (
    JSON_OPTION_HELP,
    console,
    emit_json,
    output_name,
    output_option,
    policy_path,
    print_table,
    write_output,
)
from microseg.cli.demo import DemoContext
from microseg.model import MicrosegError
from microseg.model.sections import SECTION_NAMES

if TYPE_CHECKING:
    from microseg.store import ObjectChange, RevisionInfo, WorkspaceInfo

db_app = typer.Typer(help="The store's database.", no_args_is_help=True)
workspace_app = typer.Typer(
    help="Workspaces: named change sets on a revision, submitted as a new revision.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db", rich_help_panel=STORE)
app.add_typer(workspace_app, name="workspace", rich_help_panel=STORE)

AUTHOR_HELP = "Who makes the change (default: $MICROSEG_AUTHOR, else your user name)."


@db_app.command("init")
def db_init() -> None:
    """Create the store's tables, or upgrade them to this microseg's schema. Idempotent.

    Example: MICROSEG_DATABASE_URL=postgresql+psycopg://microseg@db/microseg microseg db init
    """
    from microseg.store import init_database

    url, schema_revision = init_database()
    typer.echo(f"store {url}: schema at revision {schema_revision}")


@app.command("import", rich_help_panel=STORE)
def import_policy(
    path_text: str = typer.Argument(
        ..., metavar="PATH", help="Policy file or directory of YAML files."
    ),
    message: str = typer.Option("", "-m", "--message", help="Revision message."),
    author: str = typer.Option("", "--author", help=AUTHOR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Validate a policy and store it as the next mainline revision. Invalid: nothing stored;
    the head's own policy again: no revision made.

    Example: microseg import examples/home-lab.yaml -m "seed lab"
    """
    from microseg.policyfile import load_policy
    from microseg.store import open_store

    path = policy_path(path_text)
    policy_set = load_policy(path)
    if not policy_set.objects():
        # An empty file (or `groups: []`) would become an empty head revision.
        raise MicrosegError(f"{path}: the policy holds no objects: nothing imported")
    with open_store() as store:
        imported = store.import_policy(policy_set, author or None, message or f"import {path}")
    count = len(policy_set.objects())
    if as_json:
        emit_json({**imported.as_json(), "objects": count})
    elif imported.changed:
        typer.echo(f"imported {path} as revision {imported.revision} ({count} objects)")
    else:
        typer.echo(f"{path} is unchanged from revision {imported.revision}: no revision made")


@app.command(rich_help_panel=STORE)
def export(
    revision: int | None = typer.Option(None, "-r", "--revision", help="Default: the head."),
    output: str | None = output_option("-o", "--output", help_text="Default: stdout."),
) -> None:
    """Write a revision's policy as canonical YAML (the same bytes as `microseg fmt`).

    Example: microseg export -r 3 -o home-lab.yaml
    """
    from microseg.policyfile import dump_policy
    from microseg.store import NotFound, open_store

    with open_store(create=False) as store:
        if revision is None:
            revision = store.head()
            if revision is None:
                raise NotFound("the store has no revisions yet: microseg import FILE first")
        text = dump_policy(store.revision_policy(revision))
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_output(output, text)
        typer.echo(f"wrote revision {revision} to {output_name(output)}", err=True)


@app.command(rich_help_panel=STORE)
def log(
    limit: int | None = typer.Option(None, "-n", "--limit", min=1, help="Show only the newest N."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Mainline revisions, newest first: who changed the policy, when and why.

    Example: microseg log -n 10
    """
    from microseg.store import open_store

    with open_store(create=False) as store:
        revisions = store.log(limit)
    if as_json:
        emit_json([revision.as_json() for revision in revisions])
        return
    print_table(
        ["rev", "parent", "created (UTC)", "author", "message"],
        [_log_row(revision) for revision in revisions],
    )


def _log_row(revision: RevisionInfo) -> list[str]:
    parent = "-" if revision.parent is None else str(revision.parent)
    created = revision.created_at.strftime("%Y-%m-%d %H:%M:%S")
    first_line = revision.message.splitlines()[0] if revision.message else ""
    return [str(revision.id), parent, created, revision.author, first_line]


# -- workspaces ---------------------------------------------------------------------------


@workspace_app.command("create")
def workspace_create(
    name: str = typer.Argument(..., help="Workspace name."),
    base: int | None = typer.Option(None, "--base", help="Base revision (default: the head)."),
    author: str = typer.Option("", "--author", help=AUTHOR_HELP),
) -> None:
    """Open a workspace on a revision.

    Example: microseg workspace create restrict-web-clients
    """
    from microseg.store import open_store

    with open_store() as store:
        info = store.workspace_create(name, base, author or None)
    typer.echo(f"workspace {info.name!r} created on revision {info.base}")


@workspace_app.command("list")
def workspace_list(
    include_closed: bool = typer.Option(False, "--all", help="Include submitted and abandoned."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Workspaces (open ones; --all for submitted and abandoned ones too).

    Example: microseg workspace list --all
    """
    from microseg.store import open_store

    with open_store(create=False) as store:
        workspaces = store.workspace_list(include_closed)
    if as_json:
        emit_json([info.as_json() for info in workspaces])
        return
    print_table(
        ["name", "base", "state", "changes", "author", "created (UTC)"],
        [_workspace_row(info) for info in workspaces],
    )


def _workspace_row(info: WorkspaceInfo) -> list[str]:
    state = info.state
    if info.submitted_revision is not None:
        state += f" (rev {info.submitted_revision})"
    created = info.created_at.strftime("%Y-%m-%d %H:%M:%S")
    return [info.name, str(info.base), state, str(info.changes), info.author, created]


@workspace_app.command("show")
def workspace_show(
    name: str = typer.Argument(..., help="Workspace name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """The workspace's effective policy (base + changes) as canonical YAML.

    With --json: the workspace and its number of objects per section.
    Example: microseg workspace show restrict-web-clients
    """
    from microseg.policyfile import dump_policy
    from microseg.store import open_store

    with open_store(create=False) as store:
        info = store.workspace_info(name)
        policy_set = store.workspace_policy(name)
    if as_json:
        objects = {section: len(getattr(policy_set, section)) for section in SECTION_NAMES}
        emit_json({"workspace": info.as_json(), "objects": objects})
        return
    typer.echo(dump_policy(policy_set), nl=False)


@workspace_app.command("diff")
def workspace_diff(
    name: str = typer.Argument(..., help="Workspace name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """What the workspace adds (+), changes (~) and removes (-) relative to its base.

    Example: microseg workspace diff restrict-web-clients
    """
    from microseg.store import open_store

    with open_store(create=False) as store:
        info = store.workspace_info(name)
        changes = store.workspace_diff(name)
    if as_json:
        emit_json(
            {"workspace": info.name, "base": info.base, "changes": [c.as_json() for c in changes]}
        )
        return
    for line in diff_lines(info, changes):
        typer.echo(line)


def diff_lines(info: WorkspaceInfo, changes: list[ObjectChange]) -> list[str]:
    """A workspace diff for people: one block per object, one line per changed field."""
    count = len(changes)
    lines = [
        f"workspace {info.name!r} ({info.state}) on revision {info.base}: "
        f"{count} object{'s' if count != 1 else ''} changed"
    ]
    marks = {"added": "+", "changed": "~", "removed": "-"}
    for change in changes:
        lines.append(f"{marks[change.change]} {change.section}/{change.name}")
        if change.change == "changed":
            lines.extend(
                f"    {f.field}: {_value(f.before)} -> {_value(f.after)}" for f in change.fields
            )
        elif change.change == "added" and change.after is not None:
            lines.extend(
                f"    {field}: {_value(value)}"
                for field, value in change.after.items()
                if field != "name"
            )
    return lines


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@workspace_app.command("set")
def workspace_set(
    name: str = typer.Argument(..., help="Workspace name."),
    file_text: str = typer.Option(
        ..., "--file", "-f", metavar="FILE", help="YAML with sections, like a policy file."
    ),
) -> None:
    """Add or replace the file's objects in the workspace (all of them, or none if invalid).

    Each object is given whole. The result must be a valid policy: a change that breaks a
    reference is refused with the problems, located in the file.
    Example: microseg workspace set restrict-web-clients --file rule.yaml
    """
    from microseg.policyfile import read_policy_source
    from microseg.store import open_store
    from microseg.store.sources import set_from_source

    file = policy_path(file_text)
    with open_store() as store:
        objects = set_from_source(store, name, read_policy_source(file), str(file))
    typer.echo(f"workspace {name!r}: set {len(objects)} object{'s' if len(objects) != 1 else ''}")


@workspace_app.command("delete")
def workspace_delete(
    name: str = typer.Argument(..., help="Workspace name."),
    section: str = typer.Argument(..., help=f"One of: {', '.join(SECTION_NAMES)}."),
    object_name: str = typer.Argument(..., metavar="NAME", help="The object's name."),
) -> None:
    """Delete an object in the workspace (refused while anything refers to it).

    Example: microseg workspace delete restrict-web-clients rules clients_to_webservers
    """
    from microseg.store import open_store

    with open_store() as store:
        store.workspace_delete(name, section, object_name)
    typer.echo(f"workspace {name!r}: deleted {section}/{object_name}")


@workspace_app.command("submit")
def workspace_submit(
    name: str = typer.Argument(..., help="Workspace name."),
    message: str = typer.Option("", "-m", "--message", help="Revision message."),
    author: str = typer.Option("", "--author", help=AUTHOR_HELP),
    change: bool = typer.Option(
        False, "--change", help="Also create a change deploying the new revision (microseg change)."
    ),
) -> None:
    """Apply the workspace to the head as a new revision; refused on conflict.

    A conflict: an object the workspace changes was changed on mainline since its base.
    With --change, a change deploying the new revision to every device it changes is
    created too, waiting for approval.
    Example: microseg workspace submit restrict-web-clients -m "web only from wifi" --change
    """
    from microseg.store import default_author, open_store

    with open_store() as store:
        revision = store.workspace_submit(name, author or None, message)
        typer.echo(f"workspace {name!r} submitted as revision {revision}")
        if change:
            from microseg.deploy import create_change

            record = create_change(store, author or default_author(), revision)
            names = ", ".join(d.device for d in record.devices)
            typer.echo(
                f"change {record.id} created: deploy revision {revision} to {names} "
                "(pending-approval)"
            )


@workspace_app.command("abandon")
def workspace_abandon(name: str = typer.Argument(..., help="Workspace name.")) -> None:
    """Close the workspace without submitting it.

    Example: microseg workspace abandon restrict-web-clients
    """
    from microseg.store import open_store

    with open_store() as store:
        store.workspace_abandon(name)
    typer.echo(f"workspace {name!r} abandoned")


# -- demo ---------------------------------------------------------------------------------

SEED_STAGES = (
    ("home-lab-dns-ntp.yaml", "DNS and NTP for the wifi clients (rule72, rule73)"),
    ("home-lab-monitor.yaml", "monitor web01, web02 and appserver1 to discover their traffic"),
    ("home-lab.yaml", "lock down the web app: the Policy Builder's rules plus drop-all-else"),
)


@demo_step(20, "2. The versioned store: the seed's stages as revisions, then a workspace")
def _store_demo(context: DemoContext) -> None:
    from microseg.policyfile import load_policy
    from microseg.store import open_store

    url = f"sqlite:///{context.workdir / 'microseg.db'}"
    with open_store(url) as store:
        for file, message in SEED_STAGES:
            policy_set = context.policies.get(file) or load_policy(context.examples / file)
            number = store.import_policy(policy_set, "demo", message).revision
            console.print(f"imported {file} as revision {number}", markup=False)
        for revision in reversed(store.log()):
            line = f"  rev {revision.id}  {revision.author}  {revision.message}"
            console.print(line, markup=False)
        workspace = "web-only-from-wifi"
        store.workspace_create(workspace, author="demo")
        rule = store.revision_policy(number).rule("clients_to_webservers")
        narrowed = rule.model_copy(update={"sources": ("wifi_clients",)})
        store.workspace_set(workspace, "rules", narrowed)
        for line in diff_lines(store.workspace_info(workspace), store.workspace_diff(workspace)):
            console.print(line, markup=False)
