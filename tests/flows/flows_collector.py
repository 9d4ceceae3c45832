"""`microseg collect` started as a user starts it, for the tests that talk to a real collector."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from support import cli_command, cli_env


class Collector:
    """`microseg collect` as a user runs it, with its stderr read as it comes.

    It listens on `listen` (a free loopback port by default), flushes every 0.05 s and closes
    sessions at once (`--inactive-timeout 0`); `options` are added as given. `ports` are the
    ports its "listening on" line names, `port` the first one. `workers` > 1 adds `--workers`.
    It runs in a process group of its own, so that SIGKILL takes a supervisor and its workers
    at once.
    """

    def __init__(
        self,
        store: Path,
        *options: str,
        listen: tuple[str, ...] = ("127.0.0.1:0",),
        workers: int = 1,
    ):
        command = cli_command(
            "collect",
            *(word for address in listen for word in ("--listen", address)),
            "--store",
            str(store),
            "--flush-interval",
            "0.05",
            "--inactive-timeout",
            "0",
            *(("--workers", str(workers)) if workers != 1 else ()),
            *options,
        )
        self.process = subprocess.Popen(
            command,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        while True:
            line = self.process.stderr.readline()
            assert line, f"collector did not start: {self.lines}"
            if line.startswith("listening on"):
                break
            self.lines.append(line)
        self.ready = line
        where = line.removeprefix("listening on ").split(", store ")[0]
        self.ports = [int(address.rsplit(":", 1)[1]) for address in where.split(", ")]
        self.port = self.ports[0]
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._exporters: dict[int, socket.socket] = {}

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def send(self, datagrams: list[bytes], exporter: int = 0) -> None:
        """As exporter number `exporter`: one UDP socket (source port) each, as a real
        exporter keeps (with --workers the kernel gives each to one worker)."""
        if exporter not in self._exporters:
            self._exporters[exporter] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for datagram in datagrams:
            self._exporters[exporter].sendto(datagram, ("127.0.0.1", self.port))

    def wait_for(self, condition, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out; collector said:\n{self.stderr}"
            time.sleep(0.05)

    def stop(self, signum=signal.SIGTERM) -> int:
        if signum == signal.SIGKILL:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        self.stdout = self.process.stdout.read()
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        self.process.stdout.close()
        if signum != signal.SIGKILL:  # a sender may still be at work: it calls close()
            self.close()
        return self.process.returncode

    def close(self) -> None:
        for exporter in self._exporters.values():
            exporter.close()

    def kill(self) -> None:
        """Make sure the process is gone (a `finally:` after a failed assertion)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)
        self.close()


def collect_while_a_port_is_taken(store: Path, *options: str) -> None:
    """Run `microseg collect OPTIONS --store STORE` to its end while another socket holds a
    UDP port on 127.0.0.1 (`{taken}` in an option stands for it), and check that it was
    refused as a user error naming that address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        done = subprocess.run(
            cli_command(
                "collect",
                *(option.replace("{taken}", str(port)) for option in options),
                *("--store", str(store)),
            ),
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
