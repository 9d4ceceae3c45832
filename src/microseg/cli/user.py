"""`microseg user`: the server's users, roles and API tokens.

Passwords are read from a hidden prompt (twice) or, with --password-stdin, one line of
standard input; never from an argument (the process list and shell history would keep it).
"""

from __future__ import annotations

import sys

import typer

from microseg.cli.app import SERVER, app
from microseg.cli.common import JSON_OPTION_HELP, emit_json, print_table
from microseg.model import MicrosegError

user_app = typer.Typer(
    help="Users of `microseg serve`: roles viewer, editor, approver, admin; API tokens.",
    no_args_is_help=True,
)
token_app = typer.Typer(
    help="API tokens: shown once, stored hashed, revocable.", no_args_is_help=True
)
user_app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user", rich_help_panel=SERVER)

ROLE_HELP = "viewer (read), editor (workspaces, changes), approver (approve, run), admin (users)."
STDIN_HELP = "Read the password from the first line of standard input (for scripts)."


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise MicrosegError("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise MicrosegError("no terminal to ask for the password: use --password-stdin")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Option(..., "--role", help=ROLE_HELP),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=STDIN_HELP),
) -> None:
    """Add a user with a role and a password (hashed with argon2id).

    Example: microseg user add alice --role admin
    """
    from microseg.server import accounts
    from microseg.store import default_author, open_store
    from microseg.store.accounts import check_role

    accounts.check_user_name(name)
    check_role(role)  # before the password is asked for
    password = _password(password_stdin)
    with open_store() as store:
        user = accounts.add_user(store, name, role, password)
        store.accounts.record(default_author(), "cli", "user.add", f"user/{name}", {"role": role})
    typer.echo(f"user {user.name!r} added ({user.role})")


@user_app.command("list")
def user_list(as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP)) -> None:
    """Users, their roles and whether they are disabled.

    Example: microseg user list
    """
    from microseg.store import open_store

    with open_store(create=False) as store:
        users = store.accounts.users()
    if as_json:
        emit_json([user.as_json() for user in users])
        return
    print_table(
        ["name", "role", "state", "created (UTC)"],
        [
            [
                u.name,
                u.role,
                "disabled" if u.disabled else "enabled",
                u.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            ]
            for u in users
        ],
    )


@user_app.command("passwd")
def user_passwd(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=STDIN_HELP),
) -> None:
    """Set a user's password; their browser sessions end.

    Example: microseg user passwd alice
    """
    from microseg.server import accounts
    from microseg.store import default_author, open_store

    with open_store() as store:
        store.accounts.user(name)  # an unknown user is said before the prompt
        accounts.set_password(store, name, _password(password_stdin))
        store.accounts.record(
            default_author(), "cli", "user.update", f"user/{name}", {"password": "changed"}
        )
    typer.echo(f"password of {name!r} changed")


def _set_disabled(name: str, disabled: bool) -> None:
    from microseg.store import default_author, open_store

    with open_store() as store:
        before = store.accounts.user(name)
        if (
            disabled
            and before.role == "admin"
            and not before.disabled
            and store.accounts.count_admins() <= 1
        ):
            raise MicrosegError(f"user {name!r} is the last enabled admin: add another admin first")
        store.accounts.update_user(name, disabled=disabled)
        store.accounts.record(
            default_author(),
            "cli",
            "user.update",
            f"user/{name}",
            {"disabled": [before.disabled, disabled]},
        )


@user_app.command("disable")
def user_disable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Disable a user: their sessions end and their API tokens stop working.

    Example: microseg user disable bob
    """
    _set_disabled(name, True)
    typer.echo(f"user {name!r} disabled")


@user_app.command("enable")
def user_enable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Enable a disabled user again (their revoked tokens stay revoked).

    Example: microseg user enable bob
    """
    _set_disabled(name, False)
    typer.echo(f"user {name!r} enabled")


@user_app.command("role")
def user_role(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Argument(..., help=ROLE_HELP),
) -> None:
    """Give a user another role.

    Example: microseg user role bob approver
    """
    from microseg.store import default_author, open_store

    with open_store() as store:
        before = store.accounts.user(name)
        if before.role == "admin" and role != "admin" and store.accounts.count_admins() <= 1:
            raise MicrosegError(f"user {name!r} is the last enabled admin: add another admin first")
        store.accounts.update_user(name, role=role)
        store.accounts.record(
            default_author(), "cli", "user.update", f"user/{name}", {"role": [before.role, role]}
        )
    typer.echo(f"user {name!r} is now {role}")


@token_app.command("add")
def token_add(
    user: str = typer.Argument(..., help="The token's user."),
    name: str = typer.Option("cli", "--name", help="What the token is for."),
) -> None:
    """Create an API token for a user and print it, once (it is stored hashed).

    Example: microseg user token add ci-bot --name terraform
    """
    from microseg.server import accounts
    from microseg.store import default_author, open_store

    with open_store() as store:
        token, secret = accounts.create_token(store, user, name)
        store.accounts.record(
            default_author(), "cli", "token.create", f"user/{user}/token/{token.id}", {"name": name}
        )
    typer.echo(secret)
    typer.echo(
        f"token {token.id} for {user!r}: shown once, keep it; revoke with "
        f"`microseg user token revoke {token.id}`",
        err=True,
    )


@token_app.command("list")
def token_list(
    user: str | None = typer.Argument(None, help="Only this user's tokens."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """API tokens (never the tokens themselves).

    Example: microseg user token list ci-bot
    """
    from microseg.store import open_store

    with open_store(create=False) as store:
        tokens = store.accounts.tokens(user)
    if as_json:
        emit_json([token.as_json() for token in tokens])
        return
    print_table(
        ["id", "user", "name", "created (UTC)", "state"],
        [
            [
                str(t.id),
                t.user,
                t.name,
                t.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                "revoked" if t.revoked_at else "active",
            ]
            for t in tokens
        ],
    )


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., metavar="ID", help="Token id.")) -> None:
    """Revoke an API token: it stops working at once.

    Example: microseg user token revoke 3
    """
    from microseg.store import default_author, open_store

    with open_store() as store:
        token = store.accounts.revoke_token(token_id)
        store.accounts.record(
            default_author(), "cli", "token.revoke", f"user/{token.user}/token/{token.id}", {}
        )
    typer.echo(f"token {token.id} of {token.user!r} revoked")
