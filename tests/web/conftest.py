"""The web UI under a real browser: `microseg.server.create_app` served by uvicorn on
127.0.0.1 (a thread of the test), the seed's switch and vZTX as eAPI test doubles, a flow
store filled by the real collector from the seed lab's capture, and Debian's chromium
driven by Playwright (never a browser Playwright downloads).

Chromium resolves no name but 127.0.0.1 (`--host-resolver-rules`): it otherwise looks up
update and safe-browsing hosts on its own. Any JavaScript dialog fails the test (an
`alert(1)` would mean an object name was not escaped). Screenshots of every page go to
$MICROSEG_SCREENSHOTS, else a temporary directory the test names.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ROOT

sys.path.insert(0, str(ROOT / "tests" / "targets"))
sys.path.insert(0, str(ROOT / "tests" / "deploy"))

CHROMIUM = "/usr/bin/chromium"
HOST_RULES = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
PASSWORDS = {"alice": "alice-editor-pw", "bob": "bob-approver-pw"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """A running server: its base URL and the app (for its store)."""

    def __init__(self, app, url: str) -> None:
        self.app, self.url = app, url
        self.passwords = PASSWORDS

    @property
    def store(self):
        return self.app.state.context.store


@pytest.fixture
def served(tmp_path, monkeypatch) -> Iterator[Served]:
    """create_app on a new SQLite store and the seed lab's flow store, with an editor
    (alice) and an approver (bob)."""
    uvicorn = pytest.importorskip("uvicorn")
    from microseg.flows.demo import run_demo
    from microseg.server import accounts
    from microseg.server.app import create_app

    monkeypatch.setenv("MICROSEG_DEVICE_USERNAME", "admin")
    monkeypatch.setenv("MICROSEG_DEVICE_PASSWORD", "secret")
    monkeypatch.delenv("MICROSEG_CREDENTIALS_FILE", raising=False)
    run_demo(tmp_path)  # the seed lab's capture through the collector: tmp_path/flows
    app = create_app(f"sqlite:///{tmp_path / 'microseg.db'}", flow_store=tmp_path / "flows")
    store = app.state.context.store
    accounts.add_user(store, "alice", "editor", PASSWORDS["alice"])
    accounts.add_user(store, "bob", "approver", PASSWORDS["bob"])
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield Served(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def browser():
    """Debian's chromium, headless, resolving nothing but 127.0.0.1."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh test installs it)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[HOST_RULES, "--no-first-run", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def screenshots(tmp_path_factory) -> Path:
    configured = os.environ.get("MICROSEG_SCREENSHOTS")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {directory}")
    return directory


class Capture:
    """A running tcpdump; `stop()` ends it and returns the packets it saw, one per line."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    def stop(self) -> list[str]:
        if self.process.poll() is None:
            time.sleep(0.5)  # what was sent last reaches the capture
            self.process.terminate()
        output, _ = self.process.communicate(timeout=10)
        return [line for line in output.splitlines() if line.strip()]


@pytest.fixture
def off_loopback_capture() -> Iterator[Capture]:
    """tcpdump on every interface for what a browser sends out (DNS, HTTP(S), QUIC, mDNS,
    SSDP) to anything but loopback."""
    if shutil.which("tcpdump") is None or os.geteuid() != 0:
        pytest.skip("needs tcpdump and root")
    capture = subprocess.Popen(
        [
            "tcpdump", "-i", "any", "-n", "-l", "-q",
            "not (net 127.0.0.0/8 or host ::1) and "
            "(port 53 or port 80 or port 443 or port 853 or port 5353 or port 1900)",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    # tcpdump says "listening on any" on stderr once the capture runs.
    assert capture.stderr is not None
    said = ""
    while "listening" not in said:
        line = capture.stderr.readline()
        assert line, f"tcpdump did not start: {said}"
        said += line
    running = Capture(capture)
    try:
        yield running
    finally:
        running.stop()
