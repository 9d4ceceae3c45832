"""`microseg serve`: a real uvicorn process on loopback, and the refusal to listen elsewhere
without TLS."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest

from support import cli_command, cli_env


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


def test_serve_answers_on_loopback_and_publishes_openapi(tmp_path):
    port = _free_port()
    env = cli_env(MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'microseg.db'}")
    process = subprocess.Popen(
        cli_command("serve", "--port", str(port)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        document = None
        for _ in range(200):  # bounded: up to ~20 s for the process to listen
            try:
                document = httpx.get(f"http://127.0.0.1:{port}/api/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert document is not None and document.status_code == 200
        assert document.json()["info"]["title"] == "microseg"
        assert httpx.get(f"http://127.0.0.1:{port}/api/revisions").status_code == 401
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert "no users yet" in stderr
    assert f"http://127.0.0.1:{port}/" in stderr


def test_insecure_listen_says_loudly_why_it_is_unsafe(run_cli, tmp_path, monkeypatch):
    import uvicorn

    from microseg.cli import serve

    asked: list[tuple[str, int]] = []
    started: list[object] = []
    bind = serve.listen

    def listen_on_loopback_instead(host: str, port: int) -> socket.socket:
        # Nothing may listen on every address in a test: bind loopback, record what was asked.
        asked.append((host, port))
        return bind("127.0.0.1", 0)

    monkeypatch.setattr(serve, "listen", listen_on_loopback_instead)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: started.append(self.config))
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'db'}")
    answer = run_cli("serve", "--host", "0.0.0.0", "--insecure-listen")
    assert answer.exit_code == 0, answer.stderr
    assert "WARNING: listening on 0.0.0.0 WITHOUT TLS" in answer.stderr
    assert "in clear text" in answer.stderr
    assert asked == [("0.0.0.0", 8080)]
    assert [config.ssl_certfile for config in started] == [None]


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
