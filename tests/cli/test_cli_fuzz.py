"""Every command, with hostile arguments: a user error (exit 1) or success, never a traceback.

Each command is found in the Typer application itself (a new command is fuzzed without
touching this file), given a valid invocation, and then each of its parameters in turn gets
each hostile value: huge integers, NUL and control characters, missing files, directories,
FIFOs, /dev/zero, unicode, option-like text; every option is also given twice. The normal run
tries a fixed sample of these cases (the same every run); MICROSEG_FUZZ_LONG=1 (or `make fuzz`) tries them all.

The only exit codes a command may end with are 0 and 1 (click's own usage errors too: the
CLI turns them into user errors), and 3-5 from `check --exit-code`; 70 is the CLI's
"internal error", a bug. Every number a command takes, given text, is refused naming the
parameter as its help shows it and the value given.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from microseg.cli.app import root_command
from support import EXAMPLES, FUZZ_LONG

# The normal run's sample of (command, parameter, value) cases; the long run takes them all.
SAMPLE = 700
SECONDS_PER_CASE = 120  # a command still running after this is hung (on a FIFO, say)
EXIT_CODES = {0, 1}
CHECK_EXIT_CODES = {3, 4, 5}

HOME_LAB = str(EXAMPLES / "home-lab.yaml")
DNS_NTP = str(EXAMPLES / "home-lab-dns-ntp.yaml")
SWITCH = "andreasm-720xp-home"


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    label: str


def _commands() -> Iterator[tuple[tuple[str, ...], object]]:
    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in sorted(command.commands.items()):
                yield from walk(sub, (*path, name))
        else:
            yield path, command

    yield from walk(root_command(), ())


def _workdir_values(work: Path) -> dict[str, str]:
    return {
        "missing file": str(work / "missing" / "policy.yaml"),
        "directory": str(work / "a-directory"),
        "FIFO": str(work / "a-fifo"),
        "/dev/zero": "/dev/zero",
        "/dev/null": "/dev/null",
        "empty file": str(work / "empty.yaml"),
        "binary file": str(work / "binary.yaml"),
        "non-UTF-8 file": str(work / "latin1.csv"),
        "policy as sessions": str(work / "policy.csv"),
    }


HOSTILE = {
    "huge integer": "9" * 5000,
    "huge negative": "-" + "9" * 5000,
    "integer past 2^64": str(2**64),
    "negative": "-1",
    "zero": "0",
    "float overflow": "1e400",
    "nan": "nan",
    "NUL": "a\x00b",
    "control characters": "\x1b[31mred\x07\r",
    "newline": "two\nlines",
    "empty": "",
    "space": " ",
    "unicode": "Grüße-😀-\u202egnp",
    "long": "x" * 100_000,
    "dash": "-",
    "option-like": "--json",
    "markup": "[bold red]%s%n{0}[/]",
    "rev huge": "rev:" + "9" * 5000,
    "rev negative": "rev:-1",
    "rev superscript": "rev:²",
    "ws empty": "ws:",
    "ws missing": "ws:no-such-workspace",
    "scoped IPv6": "fe80::1%eth0",
    "IPv4 with port": "10.0.0.1:22",
    "address range": "10.0.0.0/33",
}


# `demo --keep VALUE` values the demo must refuse before it starts.
# Commands that build something big when their arguments are accepted (the demo's stores, the
# lab's namespaces): only values they refuse before starting are tried.
BUILDS_WHEN_ACCEPTED = {("demo",), ("lab", "up")}
DEMO_REFUSES = {"FIFO", "/dev/zero", "/dev/null", "empty file", "binary file", "long", "NUL"}


def _base_argv(path: tuple[str, ...], work: Path) -> list[str] | None:
    """A valid invocation of each command (None: only its hostile cases run)."""
    sessions = str(work / "sessions.csv")
    flows = str(work / "flows")
    out = str(work / "out" / "file")
    bases = {
        ("validate",): ["validate", HOME_LAB],
        ("fmt",): ["fmt", HOME_LAB, "-o", out],
        ("schema",): ["schema"],
        ("db", "init"): ["db", "init"],
        ("import",): ["import", DNS_NTP, "-m", "fuzz", "--author", "fuzz"],
        ("export",): ["export", "-r", "1", "-o", out],
        ("log",): ["log", "-n", "2", "--json"],
        ("compile",): ["compile", HOME_LAB, "-d", SWITCH, "-t", "eos", "-o", out],
        ("diff",): ["diff", DNS_NTP, HOME_LAB, "-d", SWITCH],
        ("check",): [
            "check",
            HOME_LAB,
            "--from",
            "172.18.6.138",
            "--to",
            "10.100.99.51",
            "--proto",
            "tcp",
            "--port",
            "22",
            "--device",
            SWITCH,
            "--exit-code",
        ],
        ("whatif",): ["whatif", "--base", DNS_NTP, "--candidate", HOME_LAB, "--sessions", sessions],
        ("lint",): ["lint", DNS_NTP],
        ("recommend",): ["recommend", HOME_LAB, "--sessions", sessions],
        ("sessions", "list"): ["sessions", "list", "--store", sessions, "--proto", "udp"],
        ("sessions", "export"): ["sessions", "export", "--store", flows, "--csv", out],
        ("sessions", "compact"): ["sessions", "compact", "--store", flows, "--json"],
        ("workspace", "create"): ["workspace", "create", "fuzz", "--base", "1"],
        ("workspace", "list"): ["workspace", "list", "--all"],
        ("workspace", "show"): ["workspace", "show", "w"],
        ("workspace", "diff"): ["workspace", "diff", "w", "--json"],
        ("workspace", "set"): ["workspace", "set", "w", "--file", str(work / "change.yaml")],
        ("workspace", "delete"): ["workspace", "delete", "w", "groups", "nothing"],
        ("workspace", "build"): ["workspace", "build", "w"],
        ("workspace", "submit"): ["workspace", "submit", "nothing-to-submit"],
        ("workspace", "abandon"): ["workspace", "abandon", "nothing-to-abandon"],
        # Long-running commands: only their hostile cases, which must fail before they start
        # (collect with an address it cannot bind; demo with examples it cannot read).
        ("collect",): ["collect", "--listen", "203.0.113.254:9", "--store", flows],
        ("demo",): None,
        ("lab", "up"): None,
        # One poll (of no deployed device), not a loop.
        ("monitor", "poll"): ["monitor", "poll", "--once"],
        # serve: an address that is not loopback, without TLS, is refused before listening.
        ("serve",): ["serve", "--host", "203.0.113.254", "--port", "9"],
        ("user", "add"): ["user", "add", "fuzz-user", "--role", "viewer", "--password-stdin"],
        ("user", "passwd"): ["user", "passwd", "fuzz-user", "--password-stdin"],
        ("user", "role"): ["user", "role", "fuzz-user", "editor"],
        ("user", "disable"): ["user", "disable", "fuzz-user"],
        ("user", "enable"): ["user", "enable", "fuzz-user"],
        ("user", "list"): ["user", "list", "--json"],
        ("user", "token", "add"): ["user", "token", "add", "fuzz-user", "--name", "fuzz"],
        ("user", "token", "list"): ["user", "token", "list", "fuzz-user", "--json"],
        ("user", "token", "revoke"): ["user", "token", "revoke", "1"],
    }
    return bases.get(path, [*path])


def _cases(work: Path) -> list[Case]:
    values = {**HOSTILE, **_workdir_values(work)}
    cases: list[Case] = []
    for path, command in _commands():
        base = _base_argv(path, work)
        for parameter in command.params:
            options = [o for o in parameter.opts if o.startswith("-")]
            is_flag = bool(getattr(parameter, "is_flag", False))
            if is_flag:
                if base is not None:
                    twice = (*base, options[0], options[0])
                    cases.append(Case(twice, f"{' '.join(path)} {options[0]} twice"))
                continue
            for label, value in values.items():
                if label == "FIFO" and parameter.name in ("output", "csv", "parquet"):
                    continue  # writing to a FIFO waits for its reader, as the shell's `>` does
                if path in BUILDS_WHEN_ACCEPTED and label not in DEMO_REFUSES:
                    continue  # a value the demo or `lab up` accepts runs the whole thing
                argv = _with_value(base, path, command, parameter, options, value)
                if argv is not None:
                    cases.append(Case(tuple(argv), f"{' '.join(path)} {parameter.name}={label}"))
            if options and base is not None:
                repeated = _with_value(base, path, command, parameter, options, None)
                if repeated is not None:
                    cases.append(Case(tuple(repeated), f"{' '.join(path)} {options[0]} twice"))
        cases.append(Case((*path, "--no-such-option"), f"{' '.join(path)} unknown option"))
    return cases


def _with_value(base, path, command, parameter, options, value) -> list[str] | None:
    """`base` with `parameter` set to `value` (None: its option given twice)."""
    if base is None:
        if path == ("demo",) and value is not None:
            return [*path, options[0], value]
        return None
    argv = list(base)
    if options:
        present = [i for i, word in enumerate(argv) if word in options]
        if value is None:
            if not present:
                return None
            i = present[0]
            return [*argv, argv[i], argv[i + 1]]
        if present:
            argv[present[0] + 1] = value
            return argv
        return [*argv, options[0], value]
    # an argument: replace the positional value at its place among the arguments
    if value is None:
        return None
    positions = [i for i in range(len(path), len(argv)) if _is_positional(argv, i)]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    index = arguments.index(parameter)
    if index >= len(positions):
        return None
    argv[positions[index]] = value
    return argv


def _is_positional(argv: list[str], i: int) -> bool:
    word, previous = argv[i], argv[i - 1]
    if word.startswith("-"):
        return False
    return not (previous.startswith("-") and previous not in FLAG_WORDS)


FLAG_WORDS = {
    "--json",
    "--exit-code",
    "--all",
    "--no-eph",
    "--stats",
    "--omit-mirror",
    "--include-blocked",
    "--password-stdin",
    "--insecure-listen",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("cli-fuzz")
    (work / "a-directory").mkdir()
    os.mkfifo(work / "a-fifo")
    (work / "empty.yaml").write_text("")
    (work / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (work / "latin1.csv").write_bytes(
        "protocol,src,dst,dport\ntcp,Grüße,10.0.0.1,22\n".encode("latin-1")
    )
    (work / "policy.csv").write_text(Path(HOME_LAB).read_text())
    (work / "sessions.csv").write_text(
        "vrf,protocol,src,sport,dst,dport,packets,bytes\n"
        "default,tcp,172.18.6.138,50000,10.100.99.51,22,10,1000\n"
        "default,udp,172.18.6.138,50001,10.100.1.7,53,2,120\n"
    )
    (work / "change.yaml").write_text(
        "groups:\n  - name: printers\n    prefixes: [10.100.7.0/24]\n"
    )
    (work / "flows").mkdir()
    (work / "out").mkdir()
    (work / "cwd").mkdir()
    return work


@pytest.fixture(scope="module")
def fuzz_env(workdir) -> Iterator[dict[str, str]]:
    """A store with revision 1 and workspace `w`, a flow store, all under the work dir."""
    env = {
        "MICROSEG_DATABASE_URL": f"sqlite:///{workdir / 'store.db'}",
        "MICROSEG_FLOW_STORE": str(workdir / "flows"),
        "MICROSEG_AUTHOR": "fuzz",
        "XDG_DATA_HOME": str(workdir / "xdg"),
        "XDG_CONFIG_HOME": str(workdir / "xdg-config"),
        "HOME": str(workdir / "home"),
        # No device login anywhere: `drift` and `change run` stop before contacting a switch.
        "MICROSEG_CREDENTIALS_FILE": str(workdir / "no-credentials.toml"),
        # `lab status|test|down` see this run's (empty) lab, never a lab someone has up.
        "MICROSEG_LAB_DIR": str(workdir / "lab"),
        "MICROSEG_LAB_NAME": f"msfz{os.getpid() % 10000}",
    }
    unset = ("MICROSEG_DEVICE_USERNAME", "MICROSEG_DEVICE_PASSWORD")
    saved = {name: os.environ.get(name) for name in (*env, *unset)}
    os.environ.update(env)
    for name in unset:
        os.environ.pop(name, None)
    from microseg.policyfile import load_policy
    from microseg.store import open_store

    with open_store() as store:
        store.import_policy(load_policy(HOME_LAB), "fuzz", "seed")
        store.workspace_create("w", author="fuzz")
        store.accounts.add_user("fuzz-user", "viewer", "$argon2id$v=19$m=8,t=1,p=1$not-a-real-hash")
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _selected(cases: list[Case]) -> list[Case]:
    if FUZZ_LONG:
        return cases
    # Every command's unknown-option and repeated-option cases, plus a fixed sample of the rest.
    always = [c for c in cases if c.label.endswith(("unknown option", "twice"))]
    rest = [c for c in cases if c not in always]
    return always + random.Random(20261130).sample(rest, min(SAMPLE, len(rest)))


class Hung(Exception):
    pass


def _alarm(_signal, _frame):
    raise Hung()


@pytest.mark.slow
def test_no_command_crashes_on_hostile_arguments(run_cli, workdir, fuzz_env, monkeypatch):
    # Relative names (`-o 0`, `--csv nan`) are created here, not in the checkout.
    monkeypatch.chdir(workdir / "cwd")
    cases = _selected(_cases(workdir))
    failures = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in cases:
            signal.alarm(SECONDS_PER_CASE)
            try:
                result = run_cli(*case.argv)
            except Hung:
                failures.append(f"{case.label}: still running after {SECONDS_PER_CASE} s")
                continue
            finally:
                signal.alarm(0)
            allowed = EXIT_CODES | (CHECK_EXIT_CODES if case.argv[0] == "check" else set())
            output = result.stdout + result.stderr
            if (
                result.exit_code not in allowed
                or "Traceback" in output
                or "internal error" in output
            ):
                failures.append(f"{case.label}: exit {result.exit_code}: {result.stderr[-300:]!r}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    print(f"CLI fuzz: {len(cases)} invocations, {len(failures)} crashes")
    assert not failures, f"{len(failures)} of {len(cases)} cases crashed:\n" + "\n".join(
        failures[:40]
    )


def test_the_fuzz_reaches_every_command(workdir):
    cases = _cases(workdir)
    commands = {path for path, _ in _commands()}
    reached = {tuple(c.argv[: len(path)]) for c in cases for path in commands}
    assert commands <= reached
    assert len(cases) > 1000


def _number_parameters() -> Iterator[tuple[tuple[str, ...], object, str]]:
    """(command, parameter, what it says about text) of every int or float parameter."""
    for path, command in _commands():
        for parameter in command.params:
            annotation = parameter.type_descriptor.annotation
            if annotation in (int, int | None):
                yield path, parameter, "is not a whole number"
            elif annotation in (float, float | None):
                yield path, parameter, "is not a number"


def test_text_for_a_number_is_refused_naming_the_parameter_and_the_value(run_cli):
    found = list(_number_parameters())
    assert len(found) > 20  # the walk sees the application's numbers
    for path, parameter, says in found:
        options = [o for o in parameter.opts if o.startswith("-")]
        if options:
            argv = (*path, options[0], "abc")
            name = " / ".join(repr(o) for o in parameter.opts)
        else:
            argv = (*path, "abc")
            name = (parameter.metavar or parameter.name).upper()
        result = run_cli(*argv)
        assert result.exit_code == 1, (argv, result.stderr)
        assert f"error: Invalid value for {name}: 'abc' {says}" in result.stderr, argv
        assert f"(see: microseg {' '.join(path)} --help)" in result.stderr
