"""eAPI test double: a stand-in for an Arista EOS switch's eAPI, for tests only.

No EOS device can run here, so microseg's EOS driver is tested against this double: an
HTTP(S) JSON-RPC server on 127.0.0.1 that keeps a running-config tree (`eos_cli.py`),
implements configuration sessions, session diffs, commit timers that really expire and
restore the previous configuration, and answers every command it does not know, or a
malformed request, with the error EOS would send. It is strict: a command missing from
its grammar is an error, as on the device. What each answer is modelled on:

* **JSON-RPC envelope** (`{"jsonrpc": "2.0", "id", "result": [...]}` or `"error": {"code",
  "message", "data"}`, `data` holding every command's output up to the failed one, the
  failed one with `errors`): the vEOS responses recorded in arista-northwest/eapy
  tests/conftest.py (`json_response`, `errored_response`: code 1002, message
  `CLI command 2 of 2 'show bogus' failed: invalid command`, errors
  `Invalid input (at token 1: 'bogus')`; in text format the failed entry also has
  `output: "% Invalid input ..."`), and the eAPI specification quoted in ANTA's
  `asynceapi/device.py`. A request that is not JSON-RPC: `jsonrpcerr_response` there
  (code -32600) and JSON-RPC 2.0's -32700 for unparsable JSON.
* **Other error codes**: 1000 for a command that parsed but could not run (pyeapi's
  `CommandError` lists 1000-1004 as command errors) and 1003 with
  `This is an unconverted command` for a text-only command asked for as JSON (the error
  aristanetworks/vane's drivers match on).
* **HTTP 401** for a wrong username or password: pyeapi turns it into
  `ConnectionError("<reason>. <body>")` (eapilib `send`); the body is not modelled.
* **`show version`, `show hostname`**: the field sets of eapy's recorded
  `json_response`/`text_response` (DCS-7280CR2M) and NAPALM's mocked show_version.json.
* **Configuration sessions**: `configure session NAME` starts from a copy of the running
  configuration; `rollback clean-config` empties it; `show session-config named NAME
  diffs` is a unified diff with `---`/`+++` headers (NAPALM drops two header lines);
  `configure session NAME commit` applies it; `... commit timer hh:mm:ss` applies it and
  restores the previous configuration unless committed again in time (ANTA
  `SessionConfig.commit`); `... abort` drops it, or undoes an unconfirmed commit (NAPALM
  `rollback`). `show configuration sessions detail`: ANTA `SessionConfig.status_all`'s
  example (`maxSavedSessions`, `maxOpenSessions`, `sessions` with `state`
  `pending`/`completed`, `completedTime`), plus `pendingCommitTimer` and `commitBy`
  (seconds of uptime) for a running timer (NAPALM `_get_pending_commits`).
* **`copy running-config flash:F`**, **`configure replace flash:F`**, **`write memory`**:
  NAPALM's EOS `commit_config`/`rollback`; `copy` answers `messages` as ANTA's
  `load_file` reads them.
* **`show traffic-policy interface counters`**: ANTA's observed `show traffic-policy
  interface` shape (`trafficPolicies.<name>.rules[].ruleString`, test_sa_142.py) with
  per-rule `packetCount` and `byteCount`, an ASSUMPTION no public sample confirms.

Simplifications (none reachable by the driver's correct use): every request runs with
privilege 15 (`enable` is accepted and changes nothing); the eAPI credentials live outside
the configuration; show commands exist only in the format the table below gives.

Fault injection: `reject(pattern)` (a configuration command rejected mid-session),
`hang(seconds)` (answers late: a timeout), `hang_after(pattern, seconds)` (answers late
once a given command ran: a client stuck, or killed, right after it), a wrong password (HTTP 401), `close()` (then
connection refused), and commit timers that expire when nobody confirms.
"""

from __future__ import annotations

import base64
import datetime
import difflib
import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eos_cli import (
    CliError,
    Node,
    apply,
    invalid_input,
    load_text,
    new_root,
    render,
    sections_matching,
    traffic_policies,
)

# The commands the double knows outside configuration modes (for `Invalid input` tokens).
_EXEC_COMMANDS = (
    "show version",
    "show hostname",
    "show running-config section",
    "show session-config named",
    "show configuration sessions detail",
    "show traffic-policy interface counters",
    "configure session",
    "configure terminal",
    "configure replace",
    "copy running-config",
    "write memory",
)
_TIMER = re.compile(r"(\d\d):([0-5]\d):([0-5]\d)")
_FLASH = r"flash:[A-Za-z0-9_.-]+"


@dataclass
class ConfigSession:
    name: str
    tree: Node
    state: str = "pending"  # pending | pendingCommitTimer | completed
    previous: Node | None = None  # the running configuration a timed commit replaced
    timer: threading.Timer | None = None
    commit_by: float | None = None  # seconds of uptime
    completed_time: float | None = None


def _failure(message: str) -> CliError:
    return CliError(message, code=1000, summary="could not run command")


def _unconverted() -> CliError:
    return CliError("This is an unconverted command", code=1003, summary="unconverted command")


class EapiDouble:
    """An EOS switch's eAPI, on loopback, for tests (see the module docstring).

    Example:
        with EapiDouble(hostname="leaf1", running_config="interface Ethernet1\\n") as switch:
            EosDriver("leaf1", switch.endpoint(), "admin", "secret").facts()
    """

    def __init__(
        self,
        hostname: str = "switch",
        *,
        model: str = "DCS-720XP-48ZC2",
        version: str = "4.34.2F",
        serial: str = "JPE00000001",
        running_config: str = "",
        username: str = "admin",
        password: str = "secret",
        tls: tuple[Path, Path] | None = None,
        port: int = 0,
    ) -> None:
        self.model, self.version, self.serial = model, version, serial
        self._credentials = (username, password)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.running = load_text(f"hostname {hostname}\n{running_config}")
        self.startup = ""
        self.flash: dict[str, str] = {}
        self.sessions: dict[str, ConfigSession] = {}
        self.counts: dict[tuple[str, str], tuple[int, int]] = {}
        self.requests: list[list[str]] = []
        self.expired: list[str] = []
        self._rejections: list[tuple[re.Pattern[str], str]] = []
        self._hang_seconds = 0.0
        self._hang_trigger: tuple[re.Pattern[str], float] | None = None
        self._release = threading.Event()
        self._booted = time.time()
        self._server = _Server(self, tls, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> EapiDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop answering: later connections are refused. Pending timers are cancelled."""
        with self._changed:
            self._release.set()
            self._changed.notify_all()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for session in self.sessions.values():
                if session.timer:
                    session.timer.cancel()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def endpoint(self, **overrides: Any) -> Any:
        from microseg.targets.eos.driver import EapiEndpoint

        settings = {
            "host": "127.0.0.1",
            "port": self.port,
            "transport": "https" if self._server.tls else "http",
        }
        return EapiEndpoint(**(settings | overrides))

    # -- what tests look at and inject --------------------------------------------------

    def running_config(self) -> str:
        with self._lock:
            return self._show_running(self.running)

    def reject(self, pattern: str, message: str = "Could not apply configuration") -> None:
        """Reject every configuration command matching `pattern` (a regex, whole command)."""
        self._rejections.append((re.compile(pattern), message))

    def hang(self, seconds: float) -> None:
        """Answer every request `seconds` late (bounded); `hang(0)` and `close()` release the
        requests waiting now at once (a test holds the switch until it has looked)."""
        with self._changed:
            self._hang_seconds = seconds
            self._changed.notify_all()

    @property
    def hanging(self) -> bool:
        """Whether requests are answered late now (`hang`, or `hang_after` triggered)."""
        return self._hang_seconds > 0

    def hang_after(self, pattern: str, seconds: float) -> None:
        """Once a command matching `pattern` (a regex, whole command) has run, answer every
        later request `seconds` late: a client stuck right after that command."""
        self._hang_trigger = (re.compile(pattern), seconds)

    def count(self, policy: str, match: str, packets: int, bytes_: int) -> None:
        """Traffic that hit a match: its counters go up."""
        with self._lock:
            old = self.counts.get((policy, match), (0, 0))
            self.counts[(policy, match)] = (old[0] + packets, old[1] + bytes_)

    def wait_until(self, predicate: Callable[[EapiDouble], bool], timeout: float = 30.0) -> bool:
        """Wait (bounded) until `predicate(self)` holds; False if it never did."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    # -- JSON-RPC -----------------------------------------------------------------------

    def authorised(self, header: str | None) -> bool:
        expected = base64.b64encode(":".join(self._credentials).encode()).decode()
        return header == f"Basic {expected}"

    def before_answer(self) -> None:
        with self._changed:
            if self._hang_seconds:
                self._changed.wait_for(
                    lambda: not self._hang_seconds or self._release.is_set(), self._hang_seconds
                )

    def handle(self, body: bytes) -> dict[str, Any]:
        try:
            request = json.loads(body)
        except ValueError:
            return _rpc_error(None, -32700, "Parse error")
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            return _rpc_error(None, -32600, "Expected field 'jsonrpc' not specified")
        request_id = request.get("id")
        params = request.get("params")
        if request.get("method") != "runCmds":
            return _rpc_error(request_id, -32601, f"Method not found: {request.get('method')!r}")
        if (
            not isinstance(params, dict)
            or not isinstance(params.get("cmds"), list)
            or not params["cmds"]
        ):
            return _rpc_error(request_id, -32602, "Invalid params: 'cmds' must be a non-empty list")
        fmt = params.get("format") or "json"
        if fmt not in ("json", "text") or params.get("version", 1) not in (1, "latest"):
            return _rpc_error(request_id, -32602, "Invalid params: format json|text, version 1")
        commands = params["cmds"]
        with self._lock:
            sent = [c["cmd"] if isinstance(c, dict) else str(c) for c in commands]
            self.requests.append(sent)
            results, error = _Cli(self, fmt).run(commands)
            if self._hang_trigger and any(self._hang_trigger[0].fullmatch(c) for c in sent):
                self._hang_seconds, self._hang_trigger = self._hang_trigger[1], None
            self._changed.notify_all()
        if error is None:
            return {"jsonrpc": "2.0", "id": request_id, "result": results}
        return {"jsonrpc": "2.0", "id": request_id, "error": error}

    # -- device behaviour (called with the lock held) -----------------------------------

    def hostname(self, tree: Node) -> str:
        line = next((c.line for c in tree.children if c.key == ("hostname",)), "hostname localhost")
        return line.split()[1]

    def _show_running(self, tree: Node) -> str:
        header = [
            "! Command: show running-config",
            f"! device: {self.hostname(tree)} ({self.model}, EOS-{self.version})",
            "!",
        ]
        return "\n".join([*header, *render(tree), "end"]) + "\n"

    def uptime(self) -> float:
        return time.time() - self._booted

    def commit(self, name: str, timer: str | None) -> None:
        session = self.sessions.get(name)
        if session is None:
            raise _failure(f"Session {name} does not exist")
        if session.state == "completed":
            raise _failure(f"Session {name} is already committed")
        if session.state == "pendingCommitTimer":
            if timer is not None:
                raise _failure(f"Session {name} has a commit timer running")
            session.timer.cancel()  # the confirming commit
            self._completed(session)
            return
        if timer is None:
            self.running = session.tree.copy()
            self._completed(session)
            return
        seconds = _timer_seconds(timer)
        session.previous, self.running = self.running, session.tree.copy()
        session.state, session.commit_by = "pendingCommitTimer", self.uptime() + seconds
        session.timer = threading.Timer(seconds, self._expire, args=(name,))
        session.timer.daemon = True
        session.timer.start()

    def _completed(self, session: ConfigSession) -> None:
        session.state, session.previous, session.timer = "completed", None, None
        session.completed_time = time.time()
        for other in [
            s for s in self.sessions.values() if s.state == "completed" and s is not session
        ]:
            del self.sessions[other.name]  # maxSavedSessions 1

    def abort(self, name: str) -> None:
        session = self.sessions.pop(name, None)
        if session is None:
            raise _failure(f"Session {name} does not exist")
        if session.state == "pendingCommitTimer":
            session.timer.cancel()
            self.running = session.previous
        elif session.state == "completed":
            self.sessions[name] = session
            raise _failure(f"Session {name} is already committed")

    def _expire(self, name: str) -> None:
        with self._changed:
            session = self.sessions.get(name)
            if session is None or session.state != "pendingCommitTimer":
                return
            self.running = session.previous
            del self.sessions[name]
            self.expired.append(name)
            self._changed.notify_all()

    def rejection(self, command: str) -> str | None:
        return next(
            (message for pattern, message in self._rejections if pattern.fullmatch(command)), None
        )


def _timer_seconds(text: str) -> int:
    found = _TIMER.fullmatch(text)
    seconds = (
        int(found.group(1)) * 3600 + int(found.group(2)) * 60 + int(found.group(3)) if found else 0
    )
    if not seconds:
        raise invalid_input(f"commit timer {text}", [])
    return seconds


def _rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


class _Cli:
    """One eAPI request: a CLI session that starts in privileged exec mode."""

    def __init__(self, device: EapiDouble, fmt: str) -> None:
        self.device = device
        self.fmt = fmt
        self.stack: list[Node] | None = None  # None: exec mode; else the config mode path
        self.session: ConfigSession | None = None

    def run(self, commands: list[Any]) -> tuple[list[Any], dict[str, Any] | None]:
        results: list[Any] = []
        for number, command in enumerate(commands, start=1):
            text = command["cmd"] if isinstance(command, dict) else command
            given = command.get("input") if isinstance(command, dict) else None
            if not isinstance(text, str):
                return results, {
                    "code": -32602,
                    "message": f"Invalid params: command {number} is not a string",
                }
            try:
                results.append(self._command(text.strip(), given))
            except CliError as error:
                failed: dict[str, Any] = {"errors": [error.message]}
                if self.fmt == "text":
                    failed["output"] = f"% {error.message}\n"
                message = (
                    f"CLI command {number} of {len(commands)} '{text}' failed: {error.summary}"
                )
                return results, {"code": error.code, "message": message, "data": [*results, failed]}
        return results, None

    def _command(self, text: str, given: str | None) -> Any:
        if text == "enable":
            return self._answer({}, "")
        if text.startswith("show "):
            return self._show(text)
        if self.stack is None:
            return self._exec(text)
        return self._configure(text, given)

    def _answer(self, json_value: Any, text: str) -> Any:
        return json_value if self.fmt == "json" else {"output": text}

    # -- privileged exec ------------------------------------------------------------------

    def _exec(self, text: str) -> Any:
        device = self.device
        if text in ("configure", "configure terminal"):
            self.stack = [device.running]
            return self._answer({}, "")
        if found := re.fullmatch(
            r"configure session ([A-Za-z0-9_.-]+)(?: (commit|abort))?(?: timer (\S+))?", text
        ):
            name, action, timer = found.groups()
            if action == "commit":
                device.commit(name, timer)
            elif action == "abort" and timer is None:
                device.abort(name)
            elif action is None and timer is None:
                self._enter_session(name)
            else:
                raise invalid_input(text, [], _EXEC_COMMANDS)
            return self._answer({}, "")
        if found := re.fullmatch(rf"copy running-config ({_FLASH}|startup-config)", text):
            config = device._show_running(device.running)
            if found.group(1) == "startup-config":
                device.startup = config
            else:
                device.flash[found.group(1)] = config
            return self._answer(
                {"messages": ["Copy completed successfully."]}, "Copy completed successfully.\n"
            )
        if text in ("write", "write memory"):
            device.startup = device._show_running(device.running)
            return self._answer(
                {"messages": ["Copy completed successfully."]}, "Copy completed successfully.\n"
            )
        if found := re.fullmatch(rf"configure replace ({_FLASH})", text):
            if found.group(1) not in device.flash:
                raise _failure(
                    f"Error copying {found.group(1)} to running-config (No such file or directory)"
                )
            device.running = load_text(device.flash[found.group(1)])
            return self._answer({}, "")
        raise invalid_input(text, ["config"], _EXEC_COMMANDS)

    def _enter_session(self, name: str) -> None:
        device = self.device
        session = device.sessions.get(name)
        if session is None:
            session = device.sessions[name] = ConfigSession(name, device.running.copy())
        elif session.state != "pending":
            raise _failure(f"Session {name} is in state {session.state} and cannot be modified")
        self.session, self.stack = session, [session.tree]

    # -- configuration modes ---------------------------------------------------------------

    def _configure(self, text: str, given: str | None) -> Any:
        assert self.stack is not None
        if text == "end":
            self.stack = self.session = None
            return self._answer({}, "")
        if text == "exit":
            self.stack.pop()
            if not self.stack:
                self.stack = self.session = None
            return self._answer({}, "")
        if text == "comment" and given is not None and len(self.stack) > 1:
            self.stack[-1].comment = [line.strip() for line in given.splitlines() if line.strip()]
            return self._answer({}, "")
        if self.session is not None and (result := self._session_command(text)) is not None:
            return result
        if message := self.device.rejection(text):
            raise _failure(message)
        for depth in range(len(self.stack) - 1, -1, -1):  # this mode, then enclosing modes
            entered = apply(self.stack[depth], text)
            if entered is not None:
                del self.stack[depth + 1 :]
                if isinstance(entered, Node):
                    self.stack.append(entered)
                return self._answer({}, "")
        raise invalid_input(text, [node.mode or "config" for node in reversed(self.stack)])

    def _session_command(self, text: str) -> Any:
        session = self.session
        assert session is not None
        if text == "rollback clean-config":
            session.tree = new_root()
            self.stack = [session.tree]
            return self._answer({}, "")
        if text == "abort":
            self.device.abort(session.name)
        elif found := re.fullmatch(r"commit(?: timer (\S+))?", text):
            self.device.commit(session.name, found.group(1))
        else:
            return None
        self.stack = self.session = None
        return self._answer({}, "")

    # -- show commands -----------------------------------------------------------------------

    def _show(self, text: str) -> Any:
        device = self.device
        if text == "show version":
            return self._answer(self._version(), self._version_text())
        if text == "show hostname":
            name = device.hostname(device.running)
            return self._answer(
                {"hostname": name, "fqdn": name}, f"Hostname: {name}\nFQDN:     {name}\n"
            )
        if text == "show running-config":
            return self._text_only(device._show_running(device.running))
        if found := re.fullmatch(r"show running-config section (.+)", text):
            return self._text_only(
                "\n".join(sections_matching(device.running, found.group(1))) + "\n"
            )
        if found := re.fullmatch(r"show session-config named ([A-Za-z0-9_.-]+) diffs", text):
            session = device.sessions.get(found.group(1))
            if session is None:
                raise _failure(f"Session {found.group(1)} does not exist")
            return self._text_only(self._diff(session))
        if text in ("show configuration sessions", "show configuration sessions detail"):
            return self._json_only(self._sessions())
        if text == "show traffic-policy interface counters":
            return self._json_only(self._counters())
        raise invalid_input(text, [], _EXEC_COMMANDS)

    def _text_only(self, output: str) -> Any:
        if self.fmt == "json":
            raise _unconverted()
        return {"output": output}

    def _json_only(self, value: Any) -> Any:
        if self.fmt == "text":
            raise CliError("Invalid input (the eAPI test double has this command in JSON only)")
        return value

    def _version(self) -> dict[str, Any]:
        device = self.device
        return {
            "mfgName": "Arista",
            "modelName": device.model,
            "hardwareRevision": "11.00",
            "serialNumber": device.serial,
            "systemMacAddress": "74:83:ef:02:a6:fb",
            "version": device.version,
            "architecture": "x86_64",
            "internalVersion": f"{device.version}-00000000.{device.version.replace('.', '')}",
            "internalBuildId": "00000000-0000-0000-0000-000000000000",
            "isIntlVersion": False,
            "bootupTimestamp": device._booted,
            "uptime": device.uptime(),
            "memTotal": 8000000,
            "memFree": 6000000,
        }

    def _version_text(self) -> str:
        device = self.device
        return (
            f"Arista {device.model}\nHardware version:    11.00\nSerial number:       {device.serial}\n"
            f"System MAC address:  7483.ef02.a6fb\n\nSoftware image version: {device.version}\n"
        )

    def _diff(self, session: ConfigSession) -> str:
        lines = difflib.unified_diff(
            render(self.device.running),
            render(session.tree),
            "system:/running-config",
            f"session:/{session.name}-session-config",
            lineterm="",
        )
        return "".join(line + "\n" for line in lines)

    def _sessions(self) -> dict[str, Any]:
        sessions = {}
        for name, session in self.device.sessions.items():
            entry: dict[str, Any] = {
                "instances": {},
                "state": session.state,
                "commitUser": "",
                "description": "",
            }
            if session.commit_by is not None and session.state == "pendingCommitTimer":
                entry["commitBy"] = session.commit_by
            if session.completed_time is not None:
                entry["completedTime"] = session.completed_time
            sessions[name] = entry
        return {"maxSavedSessions": 1, "maxOpenSessions": 5, "sessions": sessions}

    def _counters(self) -> dict[str, Any]:
        policies = {}
        for policy, matches in traffic_policies(self.device.running).items():
            rules = []
            for match in matches:
                packets, counted = self.device.counts.get((policy, match), (0, 0))
                rules.append({"ruleString": match, "packetCount": packets, "byteCount": counted})
            policies[policy] = {"rules": rules}
        return {"trafficPolicies": policies}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        double = self.server.double
        double.before_answer()
        if self.path != "/command-api":
            self._reply(404, b"Not Found", "text/plain")
            return
        if not double.authorised(self.headers.get("Authorization")):
            self._reply(401, b"Unable to authenticate", "text/plain")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply(200, json.dumps(double.handle(body)).encode(), "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the double's state, not its access log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, double: EapiDouble, tls: tuple[Path, Path] | None, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.double = double
        self.tls = tls is not None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) or refused our certificate: expected."""


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it.

    Returns (ca.pem, server certificate, server key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str, issuer: x509.Name | None, signer: Any, key: Any, ca: bool
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            import ipaddress

            addresses = [
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.DNSName("localhost"),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(addresses), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("microseg test CA", None, ca_key, ca_key, True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = build("eapi-double", ca.subject, ca_key, server_key, False)
    pem = serialization.Encoding.PEM
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(server.public_bytes(pem))
    paths[2].write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths
