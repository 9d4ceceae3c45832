"""`microseg serve`: a real uvicorn process on loopback, and the refusal to listen elsewhere
without TLS."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from support import EXAMPLES, cli_command, cli_env


@contextmanager
def serving(env: dict[str, str], *arguments: str) -> Iterator[list[str]]:
    """`microseg serve ARGUMENTS` as a real process; yields a list that holds its stderr
    once it has been stopped (SIGTERM) at the end of the block."""
    stderr: list[str] = []
    process = subprocess.Popen(
        cli_command("serve", *arguments),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield stderr
    finally:
        process.terminate()
        stderr.append(process.communicate(timeout=60)[1])


def first_answer(request) -> httpx2.Response:
    """`request()` once the server listens (bounded: a loaded CI machine may take a while
    to start Python and import the app)."""
    for _ in range(900):
        try:
            return request()
        except httpx2.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not answer within 900 tries")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.net"])
def test_serve_refuses_a_non_loopback_address_without_tls(run_cli, tmp_path, monkeypatch, host):
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'db'}")
    refused = run_cli("serve", "--host", host)
    assert refused.exit_code == 1
    assert f"refusing to listen on {host} without TLS" in refused.stderr
    assert "--insecure-listen" in refused.stderr


def test_serve_wants_both_tls_files(run_cli, tmp_path):
    answer = run_cli("serve", "--tls-cert", str(tmp_path / "c.pem"))
    assert answer.exit_code == 1 and "go together" in answer.stderr


def test_a_tls_file_that_is_a_directory_or_missing_is_named_with_its_option(run_cli, tmp_path):
    directory, missing = tmp_path / "certs", tmp_path / "c.pem"
    directory.mkdir()
    answer = run_cli("serve", "--tls-cert", str(directory), "--tls-key", str(directory))
    assert answer.exit_code == 1
    assert f"--tls-cert {directory}: a directory, not a PEM file" in answer.stderr
    answer = run_cli("serve", "--tls-cert", str(missing), "--tls-key", str(directory))
    assert answer.exit_code == 1 and f"--tls-cert {missing}: no such file" in answer.stderr


def test_serve_answers_on_loopback_and_publishes_openapi(tmp_path):
    port = _free_port()
    env = cli_env(MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'microseg.db'}")
    with serving(env, "--port", str(port)) as logged:
        url = f"http://127.0.0.1:{port}"
        document = first_answer(lambda: httpx2.get(f"{url}/api/openapi.json", timeout=2))
        assert document.status_code == 200
        assert document.json()["info"]["title"] == "microseg"
        assert httpx2.get(f"{url}/api/revisions").status_code == 401
    stderr = logged[0]
    assert "no users yet" in stderr
    assert f"http://127.0.0.1:{port}/" in stderr


def test_insecure_listen_says_loudly_why_it_is_unsafe(run_cli, tmp_path, monkeypatch):
    import uvicorn

    from microseg.cli import serve

    asked: list[tuple[str, int]] = []
    bound: list[socket.socket] = []
    started: list[object] = []
    bind = serve.listen

    def listen_on_loopback_instead(host: str, port: int) -> socket.socket:
        # Nothing may listen on every address in a test: bind loopback, record what was asked.
        asked.append((host, port))
        bound.append(bind("127.0.0.1", 0))
        return bound[-1]

    monkeypatch.setattr(serve, "listen", listen_on_loopback_instead)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: started.append(self.config))
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'db'}")
    answer = run_cli("serve", "--host", "0.0.0.0", "--insecure-listen")
    assert answer.exit_code == 0, answer.stderr
    assert "WARNING: listening on 0.0.0.0 WITHOUT TLS" in answer.stderr
    assert "in clear text" in answer.stderr
    assert asked == [("0.0.0.0", 8080)]
    assert [config.ssl_certfile for config in started] == [None]
    assert [listening.fileno() for listening in bound] == [-1]  # closed once the server stopped


def test_a_port_in_use_is_a_one_line_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        answer = run_cli("serve", "--port", str(port))
    assert answer.exit_code == 1
    assert (
        answer.stderr == f"error: cannot listen on 127.0.0.1 port {port}: Address already in use\n"
    )


def _self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key (PEM files), made here for the test."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


def test_serve_with_tls_sets_secure_cookies(tmp_path):
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    env = cli_env(MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'microseg.db'}")
    added = subprocess.run(
        cli_command("user", "add", "alice", "--role", "viewer", "--password-stdin"),
        input="correct horse battery staple\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    with serving(env, "--port", str(port), "--tls-cert", cert, "--tls-key", key) as logged:
        login = first_answer(
            lambda: httpx2.post(
                f"https://127.0.0.1:{port}/api/auth/login",
                json={"username": "alice", "password": "correct horse battery staple"},
                verify=ssl.create_default_context(cafile=cert),
                timeout=5,
            )
        )
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie
    stderr = logged[0]
    assert f"https://127.0.0.1:{port}/" in stderr
    assert "correct horse" not in stderr  # nothing secret in the server's log


def test_tls_files_that_do_not_load_are_one_line_before_anything_listens(run_cli, tmp_path):
    # uvicorn printed the banner, then "[SSL] PEM lib (_ssl.c:3905)"; with an encrypted key
    # it would have asked for a pass phrase on the terminal.
    from cryptography.hazmat.primitives import serialization

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    cert, key = _self_signed(first)
    _, other_key = _self_signed(second)
    encrypted = tmp_path / "encrypted.pem"
    loaded = serialization.load_pem_private_key(Path(key).read_bytes(), None)
    encrypted.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass phrase"),
        )
    )
    policy = str(EXAMPLES / "home-lab.yaml")
    for given, message in [
        ((policy, policy), f"--tls-cert {policy}, --tls-key {policy}: not a PEM certificate"),
        ((cert, other_key), f"--tls-cert {cert}, --tls-key {other_key}: the key is not the"),
        ((cert, str(encrypted)), f"--tls-key {encrypted}: the key is encrypted"),
    ]:
        answer = run_cli("serve", "--tls-cert", given[0], "--tls-key", given[1])
        assert answer.exit_code == 1
        assert answer.stderr.startswith(f"error: {message}"), answer.stderr
        assert "microseg serve:" not in answer.stderr


def test_a_flow_store_that_is_no_flow_store_is_refused_at_start(run_cli):
    answer = run_cli("serve", "--flow-store", str(EXAMPLES))
    assert answer.exit_code == 1
    assert answer.stderr.startswith(f"error: {EXAMPLES}: not a flow store")
