"""Arguments a command cannot use are user errors naming them: huge numbers, an empty path,
a FIFO or /dev/zero as a policy file, options that do not apply, an empty import."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from microseg.policyfile import loader
from support import EXAMPLES, cli_command, cli_env

HOME_LAB = str(EXAMPLES / "home-lab.yaml")
HUGE = "9" * 5000


def _user_error(result) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture
def store(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    assert run_cli("import", HOME_LAB).exit_code == 0


def test_a_revision_of_thousands_of_digits_is_no_revision(run_cli, store):
    error = _user_error(run_cli("fmt", f"rev:{HUGE}"))
    assert "no revision 99999999999999999999... (a number of 5000 digits)" in error
    assert "no revision 99 (head is 1)" in _user_error(run_cli("fmt", "rev:0099"))
    assert run_cli("fmt", "rev:0001").exit_code == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ("check", HOME_LAB, "--from", "10.0.0.1", "--to", "10.0.0.2", "--proto", HUGE),
            "unknown protocol",
        ),
        (
            ("check", HOME_LAB, "--from", "10.0.0.1", "--to", "10.0.0.2", "--proto", "6²"),
            "unknown protocol",
        ),
        (
            (
                "check",
                HOME_LAB,
                "--from",
                "10.0.0.1",
                "--to",
                "10.0.0.2",
                "--proto",
                "icmp",
                "--icmp-type",
                HUGE,
            ),
            "unknown icmp type",
        ),
        (
            ("compile", HOME_LAB, "-d", "andreas-ztx1", "--collector", f"192.0.2.1:{HUGE}"),
            "is not 1-65535",
        ),
        (("log", "-n", HUGE), "Invalid value for '-n'"),
        (("export", "-r", HUGE), "Invalid value for '-r'"),
    ],
)
def test_numbers_past_the_integer_conversion_limit_are_user_errors(run_cli, argv, message):
    assert message in _user_error(run_cli(*argv))


def test_a_huge_integer_in_a_policy_file_is_a_located_problem(run_cli, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"policies:\n  - name: p\n    id: {HUGE}\n    domain: d\n")
    error = _user_error(run_cli("validate", str(policy)))
    assert f"{policy}:3:9: a number of 5000 characters is longer than any field takes" in error


@pytest.mark.parametrize(
    "argv",
    [
        ("fmt", ""),
        ("validate", ""),
        ("import", ""),
        ("lint", ""),
        ("workspace", "set", "w", "--file", ""),
    ],
)
def test_an_empty_path_is_an_error_not_the_current_directory(
    run_cli, store, tmp_path, monkeypatch, argv
):
    monkeypatch.chdir(tmp_path)  # a directory holding a policy: `""` must not mean it
    (tmp_path / "here.yaml").write_text("groups:\n  - name: g\n    prefixes: [10.0.0.0/8]\n")
    run_cli("workspace", "create", "w")
    assert "the policy path is empty" in _user_error(run_cli(*argv))


def test_a_fifo_as_a_policy_file_is_refused_without_waiting_for_a_writer(run_cli, tmp_path):
    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)
    done = []
    runner = threading.Thread(
        target=lambda: done.append(run_cli("validate", str(fifo))), daemon=True
    )
    runner.start()
    runner.join(timeout=60)
    if runner.is_alive():  # it waits for a writer: give it one, so the test ends
        with open(fifo, "w") as writer:
            writer.write("groups: []\n")
        runner.join()
        pytest.fail("validate waited on the FIFO for a writer")
    error = _user_error(done[0])
    assert f"{fifo}: not a regular file (a FIFO, device or socket)" in error


@pytest.mark.parametrize(
    "argv",
    [
        ["recommend", str(EXAMPLES / "home-lab.yaml"), "--sessions"],
        ["sessions", "export", "--csv", "out.csv", "--store"],
    ],
)
def test_a_fifo_as_a_session_file_is_refused_without_waiting_for_a_writer(tmp_path, argv):
    # A session file is read more than once (columns, rows, summary): a FIFO, even with a
    # writer, left the command waiting for ever at its second open.
    fifo = tmp_path / "sessions.csv"
    os.mkfifo(fifo)
    try:
        done = subprocess.run(
            cli_command(*argv, str(fifo)),
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv[0]} waited on the FIFO for a writer")
    assert done.returncode == 1
    assert f"{fifo}: not a regular file (a FIFO, device or socket)" in done.stderr
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_as_a_policy_file_is_refused(run_cli, device):
    error = _user_error(run_cli("validate", device))
    assert f"{device}: not a regular file" in error


def test_a_policy_file_over_the_size_cap_is_refused(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "MAX_POLICY_FILE_BYTES", 1000)
    policy = tmp_path / "big.yaml"
    policy.write_text("groups:\n" + "  - {name: g, prefixes: [10.0.0.0/8]}\n" * 100)
    error = _user_error(run_cli("validate", str(policy)))
    assert f"{policy}: larger than 0 MiB: not read as a policy file" in error


def test_the_size_cap_is_documented():
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert f"regular files of at most {loader.MAX_POLICY_FILE_BYTES // 2**20} MiB" in readme


def test_icmp_type_with_a_port_protocol_is_an_error(run_cli):
    argv = ["check", HOME_LAB, "--from", "172.18.6.138", "--to", "10.100.1.7", "--port", "53"]
    error = _user_error(run_cli(*argv, "--proto", "udp", "--icmp-type", "echo"))
    assert "--icmp-type applies to icmp and icmpv6, not protocol udp" in error
    assert run_cli(*argv, "--proto", "udp").exit_code == 0


def test_importing_an_empty_file_creates_no_revision(run_cli, store, tmp_path):
    for text in ("", "# nothing yet\n", "groups: []\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        assert f"{empty}: the policy holds no objects: nothing imported" in _user_error(
            run_cli("import", str(empty))
        )
    assert run_cli("log", "--json").stdout.count('"id"') == 1


def test_a_nul_in_an_argument_is_a_user_error(run_cli):
    assert "an argument contains a NUL character" in _user_error(run_cli("validate", "a\x00b"))


def test_a_file_name_too_long_for_the_file_system_is_a_user_error(run_cli):
    error = _user_error(run_cli("validate", "x" * 100_000))
    assert error == f"error: File name too long: {'x' * 120}... (100000 characters)\n"


def test_a_listen_port_of_thousands_of_digits_is_a_user_error(run_cli):
    huge = _user_error(run_cli("collect", "--listen", f"127.0.0.1:{HUGE}"))
    assert "port 999999999... is not 0-65535" in huge
    past = _user_error(run_cli("collect", "--listen", "127.0.0.1:65536"))
    assert "--listen '127.0.0.1:65536': port 65536 is not 0-65535" in past


@pytest.mark.parametrize("port", ["70000", "-1", HUGE])
def test_a_port_no_packet_can_carry_is_refused_not_an_empty_listing(run_cli, tmp_path, port):
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("protocol,src,dst,dport\ntcp,10.0.0.1,10.0.0.2,22\n")
    error = _user_error(run_cli("sessions", "list", "--store", str(sessions), "--port", port))
    assert "Invalid value for '--port'" in error


@pytest.mark.parametrize(
    "argv",
    [
        ("sessions", "compact"),
        ("sessions", "list"),
        ("monitor", "rules"),
    ],
)
def test_a_mistyped_flow_store_is_an_error_not_an_empty_answer(run_cli, store, tmp_path, argv):
    missing = tmp_path / "flwos"
    error = _user_error(run_cli(*argv, "--store", str(missing)))
    assert str(missing) in error and "no such" in error
    assert not missing.exists()  # and nothing was made there


@pytest.mark.parametrize(
    "argv",
    [
        ["lint", str(EXAMPLES / "home-lab.yaml"), "--json"],
        ["compile", str(EXAMPLES / "home-lab.yaml"), "-d", "andreasm-720xp-home"],
        ["fmt", str(EXAMPLES / "home-lab.yaml"), "-o", "-"],
        ["validate", str(EXAMPLES / "home-lab.yaml")],
    ],
)
def test_a_closed_standard_output_is_a_user_error_not_a_crash_or_a_silent_success(argv):
    # `microseg lint --json >&-`: sys.stdout is None; writing to it was exit 70, and a
    # command printing through click or rich said nothing and exited 0 (as `echo >&-` does
    # not: "write error: Bad file descriptor").
    done = subprocess.run(
        cli_command(*argv),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == "error: standard output is closed\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["lint", str(EXAMPLES / "home-lab.yaml"), "--json"],
        ["validate", str(EXAMPLES / "home-lab.yaml"), "--json"],
        ["compile", str(EXAMPLES / "home-lab.yaml"), "-d", "andreasm-720xp-home"],
        ["schema"],
    ],
)
def test_a_reader_that_closed_early_ends_the_command_quietly(argv):
    # `microseg lint --json | head -1`: output still buffered was flushed at interpreter exit,
    # which said "Exception ignored ... BrokenPipeError" and exited 120. Python's note on
    # SIGPIPE (library/signal.html#note-on-sigpipe): no message, exit 1.
    reader, writer = os.pipe()
    os.close(reader)
    env = cli_env()
    env.pop("PYTHONUNBUFFERED", None)  # a user's shell: stdout to a pipe is block-buffered
    try:
        done = subprocess.run(
            cli_command(*argv), env=env, stdout=writer, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (1, "")
