"""The EOS driver: eAPI (JSON-RPC over HTTPS) through pyeapi, one configuration session
per device per change.

How each verb talks to the switch, and where that behaviour is documented:

* eAPI is JSON-RPC 2.0: method `runCmds`, params `version` 1, `cmds`, `format`
  `json`|`text`; a result per command, or an `error` with `code`, `message` and `data`,
  a list holding the output of every command up to the failed one, the last with its
  `errors` (pyeapi `eapilib.EapiConnection.request`/`send` docstrings; the eAPI
  specification as quoted in ANTA's `asynceapi/device.py`). Each request is a new CLI
  session on the switch, so every configuration request starts with
  `configure session NAME` (pyeapi `Node._configure_session`).
* `load`: `configure session NAME`, `rollback clean-config`, then the whole
  configuration -- the device's `show running-config` with the owned sections replaced
  (`sections.replace_owned`) -- then `end`. A session started from `rollback
  clean-config` replaces the running configuration on commit (NAPALM's EOS driver,
  `_load_config(replace=True)`; ANTA `asynceapi.config_session.SessionConfig.push(
  replace=True)`), and EOS diffs the session against the running configuration, so
  only what changed in the owned sections shows and changes; every other line is entered
  again exactly as the device printed it. Any rejected command aborts the session.
* `compare`: `show session-config named NAME diffs` (text only; pyeapi `Node.diff` notes
  it has no JSON form). The first two lines are the `---`/`+++` headers (NAPALM drops
  them the same way).
* `commit`: `configure session NAME commit`, or `... commit timer hh:mm:ss` for
  commit-confirm: EOS restores the previous configuration unless a second commit comes
  before the timer expires (ANTA `SessionConfig.commit(timer=)`; NAPALM
  `commit_config(revert_in=)`). Before committing, the running configuration is copied to
  `flash:microseg-rollback-0` for `rollback` (NAPALM copies to `flash:rollback-0`).
* `confirm`: `configure session NAME commit`, only while `show configuration sessions
  detail` reports the session `pendingCommitTimer` (NAPALM `confirm_commit` and
  `_get_pending_commits`; EOS 4.32+ reports `commitTimerSessionName` instead).
* `discard`: `configure session NAME abort`; during an unconfirmed commit this restores
  the previous configuration at once (NAPALM `rollback`).
* `rollback`: `configure replace flash:microseg-rollback-0` (NAPALM `rollback`).
* `facts`: `show version` (`modelName`, `version`, `serialNumber`) and `show hostname`
  (`hostname`) (NAPALM `get_facts`; ANTA `VerifyHostname`).
* `counters`: `show traffic-policy interface counters`, JSON (see `_match_counters`).

Confirmed commits are saved with `write memory` (as NAPALM does), so a reload keeps them.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import pyeapi
import pyeapi.eapilib

from microseg.targets import (
    AuthenticationFailed,
    CommandRejected,
    DeviceDiff,
    DeviceUnreachable,
    DriverError,
    Facts,
    MatchCounters,
)
from microseg.targets.eos.sections import (
    Role,
    SectionError,
    cli_commands,
    owned_sections,
    parse_sections,
    render_sections,
    replace_owned,
)

# pyeapi logs every transport failure with a traceback (`_LOGGER.exception`); with no
# handler configured Python would print it on stderr. The driver raises a clear
# DriverError instead, so pyeapi's own records are kept out of the user's terminal.
logging.getLogger("pyeapi").addHandler(logging.NullHandler())
logging.getLogger("pyeapi").propagate = False

ROLLBACK_FILE = "flash:microseg-rollback-0"
MAX_CONFIRM_SECONDS = 24 * 3600 - 1  # `commit timer hh:mm:ss`
_SESSION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}$")


class InsecureTransportWarning(UserWarning):
    """eAPI over plain http: credentials and configuration cross the network in clear."""


@dataclass(frozen=True)
class EapiEndpoint:
    """Where a device's eAPI answers.

    `transport` is `https` (certificate verified against the system's CAs or `ca_file`)
    or `http` (labs and tests only; warns). `timeout` is per request, in seconds.
    Example: EapiEndpoint(host="192.0.2.10", ca_file="/etc/microseg/lab-ca.pem")
    """

    host: str
    port: int = 443
    transport: Literal["https", "http"] = "https"
    ca_file: str | None = None
    timeout: float = 30.0


class EosDriver:
    """One EOS device through eAPI (pyeapi), in the role of a switch or a monitor node.

    Credentials are handed to pyeapi's connection and not kept by the driver.
    `session` names the device's configuration session; give the same name (the
    change's) to confirm or roll back from another process after a crash.
    """

    def __init__(
        self,
        device: str,
        endpoint: EapiEndpoint,
        username: str,
        password: str,
        role: Role = "switch",
        session: str | None = None,
    ) -> None:
        self.device = device
        self.role: Role = role
        self.session = session or f"microseg-{uuid.uuid4().hex[:12]}"
        if not _SESSION_NAME.match(self.session):
            raise DriverError(
                device, f"session name {self.session!r}: use 1-64 of A-Z a-z 0-9 _ . -"
            )
        self._endpoint = endpoint
        self._committed = False
        self._node = pyeapi.client.Node(self._connect(endpoint, username, password))

    def __repr__(self) -> str:
        return f"EosDriver({self.device!r}, {self._endpoint.host}:{self._endpoint.port}, role={self.role!r})"

    def _connect(self, endpoint: EapiEndpoint, username: str, password: str) -> Any:
        context = None
        if endpoint.transport == "http":
            warnings.warn(
                f"device {self.device!r}: eAPI over plain http; the password and the "
                "configuration cross the network unencrypted",
                InsecureTransportWarning,
                stacklevel=3,
            )
        elif endpoint.transport == "https":
            try:
                # Verified against the system's CAs, or only the given CA file; the host
                # name (or address) must be in the certificate. pyeapi would otherwise
                # build an unverified context (eapilib.HttpsEapiConnection).
                context = ssl.create_default_context(cafile=endpoint.ca_file)
            except (OSError, ssl.SSLError) as error:
                raise DriverError(self.device, f"CA file {endpoint.ca_file}: {error}") from None
        else:
            raise DriverError(self.device, f"transport {endpoint.transport!r}: use https or http")
        return pyeapi.client.connect(
            transport=endpoint.transport,
            host=endpoint.host,
            port=endpoint.port,
            username=username,
            password=password,
            timeout=endpoint.timeout,
            context=context,
        )

    # -- the verbs ------------------------------------------------------------------

    def facts(self) -> Facts:
        version, hostname = self._run(["show version", "show hostname"])
        try:
            return Facts(
                hostname=hostname["hostname"],
                model=version["modelName"],
                version=version["version"],
                serial=version["serialNumber"],
            )
        except (KeyError, TypeError) as missing:
            raise DriverError(
                self.device, f"unexpected show version/hostname output: no {missing}"
            ) from None

    def running(self) -> str:
        """The owned sections of the running configuration, laid out as rendered."""
        sections = parse_sections(self._running_config())
        return render_sections(owned_sections(sections, self.role, []))

    def load(self, config: str) -> None:
        sessions = self._sessions()
        state = session_state(sessions, self.session)
        if state not in (None, "pending"):
            raise DriverError(
                self.device,
                f"configuration session {self.session!r} is {state}; a new change needs a new session",
            )
        self._refuse_over_pending_timer(sessions)
        try:
            candidate = replace_owned(self._running_config(), config, self.role)
        except SectionError as error:
            raise DriverError(self.device, str(error)) from None
        commands: list[str | dict[str, str]] = [
            f"configure session {self.session}",
            "rollback clean-config",
        ]
        commands += cli_commands(candidate)
        commands.append("end")
        try:
            self._run(commands)
        except CommandRejected:
            self._abort_quietly()
            raise

    def compare(self) -> DeviceDiff:
        (output,) = self._run([f"show session-config named {self.session} diffs"], encoding="text")
        body = output["output"].splitlines()[2:]
        return DeviceDiff(self.device, "\n".join(body) + "\n" if body else "")

    def commit(self, confirm_within: int | None = None) -> None:
        sessions = self._sessions()
        if session_state(sessions, self.session) != "pending":
            raise DriverError(
                self.device, f"configuration session {self.session!r} has nothing loaded to commit"
            )
        self._refuse_over_pending_timer(sessions)
        command = f"configure session {self.session} commit"
        if confirm_within is not None:
            if not 1 <= confirm_within <= MAX_CONFIRM_SECONDS:
                raise DriverError(
                    self.device,
                    f"confirm within {confirm_within} s: EOS commit timers run 1 s to 23:59:59",
                )
            command += f" timer {time.strftime('%H:%M:%S', time.gmtime(confirm_within))}"
        self._run([f"copy running-config {ROLLBACK_FILE}"])
        self._run([command])
        self._committed = True
        if confirm_within is None:
            self._run(["write memory"])

    def confirm(self) -> None:
        if self._session_state() != "pendingCommitTimer":
            raise DriverError(
                self.device,
                f"no commit of configuration session {self.session!r} waits for confirmation "
                "(if its timer expired, EOS has restored the previous configuration)",
            )
        self._run([f"configure session {self.session} commit", "write memory"])

    def discard(self) -> None:
        """Drop what is loaded; during an unconfirmed commit, restore the previous config."""
        if self._session_state() in ("pending", "pendingCommitTimer"):
            self._run([f"configure session {self.session} abort"])

    def rollback(self) -> None:
        """Undo this driver's commit: abort it while unconfirmed, else restore the
        configuration saved just before it."""
        state = self._session_state()
        if state == "pendingCommitTimer":
            self._run([f"configure session {self.session} abort"])
        elif self._committed:
            self._run([f"configure replace {ROLLBACK_FILE}", "write memory"])
        else:
            raise DriverError(
                self.device,
                f"configuration session {self.session!r} committed nothing to roll back",
            )
        self._committed = False

    def counters(self) -> list[MatchCounters]:
        (output,) = self._run(["show traffic-policy interface counters"])
        return _match_counters(self.device, output)

    # -- eAPI -------------------------------------------------------------------------

    def _running_config(self) -> str:
        (output,) = self._run(["show running-config"], encoding="text")
        return output["output"]

    def _sessions(self) -> Any:
        (output,) = self._run(["show configuration sessions detail"])
        return output

    def _session_state(self) -> str | None:
        return session_state(self._sessions(), self.session)

    def _refuse_over_pending_timer(self, sessions: Any) -> None:
        """Another session's unconfirmed commit would, on expiring, restore the
        configuration from before it -- and so undo ours (NAPALM refuses a commit-confirm
        while one is pending for the same reason)."""
        others = [name for name in timed_sessions(sessions) if name != self.session]
        if others:
            raise DriverError(
                self.device,
                f"configuration session {others[0]!r} has an unconfirmed commit; confirm or abort "
                "it first (when its timer expires EOS restores the configuration from before it)",
            )

    def _abort_quietly(self) -> None:
        try:
            self._run([f"configure session {self.session} abort"])
        except DriverError:
            logging.getLogger(__name__).warning(
                "device %r: could not abort configuration session %r", self.device, self.session
            )

    def _run(self, commands: list[Any], encoding: str = "json") -> list[Any]:
        try:
            return self._node.run_commands(commands, encoding=encoding)
        except pyeapi.eapilib.CommandError as error:
            raise self._rejected(error, commands) from None
        except pyeapi.eapilib.ConnectionError as error:
            raise self._unreachable(error.message, commands) from None

    def _rejected(self, error: pyeapi.eapilib.CommandError, commands: list[Any]) -> CommandRejected:
        # eAPI: `data` holds one entry per command up to and including the failed one,
        # whose `errors` say why (the `enable` pyeapi prepends is entry 0).
        output = error.output or []
        sent = ["enable", *commands]
        failed = sent[len(output) - 1] if 0 < len(output) <= len(sent) else None
        if isinstance(failed, dict):
            failed = failed["cmd"]
        details = output[-1].get("errors", []) if output and isinstance(output[-1], dict) else []
        message = "; ".join(details) or error.error_text
        return CommandRejected(
            self.device,
            f"{message} (EOS error {error.error_code}: {error.error_text})",
            failed,
            int(error.error_code),
        )

    def _unreachable(self, message: str, commands: list[Any]) -> DriverError:
        first = commands[0] if commands else None
        command = first["cmd"] if isinstance(first, dict) else first
        where = f"{self._endpoint.transport}://{self._endpoint.host}:{self._endpoint.port}"
        if message.startswith("Unauthorized"):
            # pyeapi raises ConnectionError("<reason>. <body>") on HTTP 401.
            return AuthenticationFailed(
                self.device, f"{where} refused the username or password (HTTP 401)", command
            )
        if "CERTIFICATE_VERIFY_FAILED" in message:
            return DeviceUnreachable(
                self.device,
                f"{where}: TLS certificate not trusted ({_reason(message)}); give the CA that signed "
                "the switch's certificate as ca_file",
                command,
            )
        if "timed out" in message:
            return DeviceUnreachable(
                self.device, f"{where} did not answer within {self._endpoint.timeout:g} s", command
            )
        return DeviceUnreachable(self.device, f"{where}: {_reason(message)}", command)


def session_state(output: Any, session: str) -> str | None:
    """A session's state in `show configuration sessions detail` (JSON): `pending`,
    `pendingCommitTimer`, `completed`, ..., or None when EOS has no such session (never
    opened, aborted, or rolled back when its commit timer expired)."""
    # EOS 4.32+ names the session with a running commit timer at the top level
    # (NAPALM `_get_pending_commits`, "Syntax change >EOS 4.32").
    if output.get("commitTimerSessionName") == session:
        return "pendingCommitTimer"
    entry = output.get("sessions", {}).get(session)
    if entry is None:
        return None
    state = entry["state"]
    return "pendingCommitTimer" if "pendingCommitTimer" in state else state


def timed_sessions(output: Any) -> list[str]:
    """The sessions whose commit waits for confirmation, in `show configuration sessions
    detail` (JSON), either EOS layout."""
    names = [
        name
        for name, entry in output.get("sessions", {}).items()
        if "pendingCommitTimer" in entry.get("state", "")
    ]
    if output.get("commitTimerSessionName"):
        names.append(output["commitTimerSessionName"])
    return sorted(set(names))


def _reason(message: str) -> str:
    return message.removeprefix("Socket error during eAPI connection: ")


def _match_counters(device: str, output: Any) -> list[MatchCounters]:
    """Counters from `show traffic-policy interface counters` (JSON).

    The outer shape -- `trafficPolicies` by policy name, each with `rules`, each rule
    named by `ruleString` -- is the one ANTA's unit tests use for `show traffic-policy
    interface` ("compact structured Traffic Policy output matching the observed schema",
    tests/units/anta_tests/advisories/test_sa_142.py). The per-rule counter fields
    `packetCount` and `byteCount` are NOT confirmed against a device: we found no public
    JSON sample of traffic-policy counters (the seed shows only the text form,
    `Actions: Count: 0 packets`). A device that prints other fields gets a clear error
    here, not zeros.
    """
    try:
        counters = []
        for policy, body in sorted(output["trafficPolicies"].items()):
            for rule in body["rules"]:
                packets = rule["packetCount"]
                counted = rule.get("byteCount")
                counters.append(
                    MatchCounters(policy, rule["ruleString"], int(packets), _int_or_none(counted))
                )
        return counters
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise DriverError(
            device,
            f"unexpected 'show traffic-policy interface counters' output ({type(error).__name__}: {error}); "
            "expected trafficPolicies.<policy>.rules[].ruleString/packetCount",
            "show traffic-policy interface counters",
        ) from None


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
