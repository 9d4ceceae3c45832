"""`microseg serve`: the REST API and web UI on uvicorn."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import typer

from microseg.cli.app import SERVER, app
from microseg.cli.common import err_console
from microseg.model import MicrosegError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name or 0.0.0.0 / :: (every address) is not loopback


UNSAFE = (
    "passwords, session cookies and API tokens would cross the network in clear text, "
    "readable and reusable by anyone on the path"
)


@app.command(rich_help_panel=SERVER)
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="TCP port."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="TLS certificate (PEM)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="TLS private key (PEM)."),
    insecure_listen: bool = typer.Option(
        False,
        "--insecure-listen",
        help="Listen on a non-loopback address without TLS anyway (unsafe; says why).",
    ),
    flow_store: Path | None = typer.Option(
        None, "--flow-store", help="Flow store for sessions, recommend and monitor."
    ),
) -> None:
    """Serve the REST API (OpenAPI at /api/openapi.json) and the web UI.

    Listening on anything but loopback needs --tls-cert and --tls-key.
    Example: microseg serve --port 8080
    """
    if (tls_cert is None) != (tls_key is None):
        raise MicrosegError("--tls-cert and --tls-key go together: give both or neither")
    for option, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and path.is_dir():
            raise MicrosegError(f"{option} {path}: a directory, not a PEM file")
        if path is not None and not path.is_file():
            raise MicrosegError(f"{option} {path}: no such file")
    if tls_cert is not None and tls_key is not None:
        check_tls_files(tls_cert, tls_key)
    if flow_store is not None and flow_store.is_dir():
        from microseg.flows.flowstore import check_flow_store

        check_flow_store(flow_store)  # said now, not on every request that reads it
    tls = tls_cert is not None
    if not tls and not is_loopback(host):
        if not insecure_listen:
            raise MicrosegError(
                f"refusing to listen on {host} without TLS: {UNSAFE}. Give --tls-cert and "
                "--tls-key, listen on 127.0.0.1 behind a TLS proxy, or add --insecure-listen "
                "to do it anyway"
            )
        err_console.print(
            f"WARNING: listening on {host} WITHOUT TLS (--insecure-listen): {UNSAFE}. "
            "Use this only on a network you trust completely.",
            markup=False,
            style="bold red",
        )
    # Closed when the server stops or cannot start (a bad store URL, an unreadable key).
    with listen(host, port) as listening:
        import uvicorn

        from microseg.server import create_app

        application = create_app(secure_cookies=tls, flow_store=flow_store)
        store = application.state.context.store
        if not store.accounts.users():
            err_console.print(
                "note: no users yet: add one with `microseg user add NAME --role admin`",
                markup=False,
            )
        scheme = "https" if tls else "http"
        shown = f"[{host}]" if ":" in host else host
        bound_port = listening.getsockname()[1]
        err_console.print(
            f"microseg serve: {scheme}://{shown}:{bound_port}/ "
            f"(API {scheme}://{shown}:{bound_port}/api/docs), store {store.url}",
            markup=False,
        )
        config = uvicorn.Config(
            application,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            log_level="info",
            # Paths and status only: no request carries a secret in its URL.
            access_log=True,
            server_header=False,
        )
        uvicorn.Server(config).run(sockets=[listening])


def check_tls_files(cert: Path, key: Path) -> None:
    """The certificate and key load as uvicorn will load them, or one line naming the files
    and why, before anything listens: uvicorn said `[SSL] PEM lib (_ssl.c:3905)` after the
    banner, and for an encrypted key it would ask for a pass phrase on the terminal."""
    import ssl

    def no_pass_phrase() -> bytes:
        raise MicrosegError(
            f"--tls-key {key}: the key is encrypted; give it unencrypted (readable by the "
            "server's user only)"
        )

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, no_pass_phrase)
    except ssl.SSLError as error:
        # OpenSSL gives no reason for files that are not PEM at all ("[SSL] PEM lib").
        why = {
            "KEY_VALUES_MISMATCH": "the key is not the certificate's",
            None: "not a PEM certificate and its private key",
        }.get(error.reason, str(error.reason))
        raise MicrosegError(f"--tls-cert {cert}, --tls-key {key}: {why}") from None
    except OSError as error:
        raise MicrosegError(f"--tls-cert {cert}, --tls-key {key}: {error.strerror}") from None


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a one-line error (taken, no such address, no
    permission): bound here, not by uvicorn, which would exit with its own code."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise MicrosegError(f"cannot listen on {host!r}: {error}") from None
    listening = socket.socket(family, kind, protocol)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
    except OSError as error:
        listening.close()
        raise MicrosegError(f"cannot listen on {host} port {port}: {error.strerror}") from None
    return listening
