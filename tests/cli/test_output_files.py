"""Every command that writes a file (`fmt -o`, `export -o`, `compile -o`, `sessions export`)
goes through one writer: atomic for regular files, through symlinks, in place for devices and
FIFOs, keeping an existing file's mode, and never a fixed temporary name."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from microseg.cli.common import write_output
from microseg.model import MicrosegError
from support import EXAMPLES, cli_command, cli_env

HOME_LAB = str(EXAMPLES / "home-lab.yaml")


@pytest.fixture
def flow_store(tmp_path) -> Path:
    store = tmp_path / "flows"
    store.mkdir()
    return store


@pytest.fixture
def writers(flow_store, tmp_path, monkeypatch):
    """Each writing command, as argv given its output path."""
    monkeypatch.setenv("MICROSEG_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    return {
        "fmt": lambda out: ["fmt", HOME_LAB, "-o", out],
        "compile": lambda out: ["compile", HOME_LAB, "-d", "andreasm-720xp-home", "-o", out],
        "export": lambda out: ["export", "-o", out],
        "sessions-csv": lambda out: [
            "sessions",
            "export",
            "--store",
            str(flow_store),
            "--csv",
            out,
        ],
        "sessions-parquet": lambda out: [
            "sessions",
            "export",
            "--store",
            str(flow_store),
            "--parquet",
            out,
        ],
    }


WRITERS = ["fmt", "compile", "export", "sessions-csv", "sessions-parquet"]


def _run(run_cli, writers, name, out):
    if name == "export":
        assert run_cli("import", HOME_LAB).exit_code == 0
    return run_cli(*writers[name](str(out)))


@pytest.mark.parametrize("name", WRITERS)
def test_a_symlink_is_written_through_and_stays_a_link(run_cli, writers, tmp_path, name):
    target = tmp_path / "real.out"
    target.write_text("old\n")
    link = tmp_path / "link.out"
    link.symlink_to(target)
    result = _run(run_cli, writers, name, link)
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() != b"old\n" and target.stat().st_size > 0


@pytest.fixture
def null_device(tmp_path) -> Path:
    """A character device like /dev/null (1, 3), private to the test: a writer that replaces
    devices must not be tried on the real /dev/null."""
    if os.geteuid() != 0:
        return Path("/dev/null")
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return device


@pytest.mark.parametrize("name", WRITERS)
def test_a_character_device_stays_one(run_cli, writers, null_device, name):
    before = os.stat(null_device)
    result = _run(run_cli, writers, name, null_device)
    assert result.exit_code == 0, result.stderr
    after = os.stat(null_device)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_mode, after.st_rdev) == (
        before.st_ino,
        before.st_mode,
        before.st_rdev,
    )


@pytest.mark.parametrize("name", WRITERS)
def test_a_fifo_is_streamed_to_not_replaced(run_cli, writers, tmp_path, name):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = bytearray()

    def read() -> None:
        with open(fifo, "rb") as pipe:
            received.extend(pipe.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = _run(run_cli, writers, name, fifo)
    if stat.S_ISFIFO(fifo.stat().st_mode):  # (if it was replaced, the reader waits forever)
        reader.join(timeout=60)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received


@pytest.mark.parametrize("name", WRITERS)
def test_an_existing_file_keeps_its_mode(run_cli, writers, tmp_path, name):
    out = tmp_path / "out"
    out.write_text("old\n")
    out.chmod(0o644)
    result = _run(run_cli, writers, name, out)
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert out.read_bytes() != b"old\n"


@pytest.mark.parametrize("name", WRITERS)
def test_a_new_file_gets_the_umask(run_cli, writers, tmp_path, name):
    out = tmp_path / "new"
    previous = os.umask(0o027)
    try:
        result = _run(run_cli, writers, name, out)
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


@pytest.mark.parametrize("name", WRITERS)
def test_the_temporary_name_is_unique_and_nothing_is_left_behind(run_cli, writers, tmp_path, name):
    out = tmp_path / "out"
    # The old `sessions export` wrote to this fixed name, clobbering someone's file.
    bystander = tmp_path / ".out.tmp"
    bystander.write_text("mine\n")
    result = _run(run_cli, writers, name, out)
    assert result.exit_code == 0, result.stderr
    assert bystander.read_text() == "mine\n"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out."))
    assert leftovers == [".out.tmp"]


@pytest.mark.parametrize("name", WRITERS)
def test_a_directory_in_the_way_is_a_user_error(run_cli, writers, tmp_path, name):
    out = tmp_path / "dir"
    out.mkdir()
    result = _run(run_cli, writers, name, out)
    assert result.exit_code == 1
    assert f"cannot write {out}: Is a directory" in result.stderr
    assert out.is_dir() and not any(out.iterdir())


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    write_output(link, "text\n")
    assert link.is_symlink() and (tmp_path / "target").read_text() == "text\n"


def test_a_symlink_loop_is_a_user_error(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(MicrosegError, match=r"cannot write .*loop"):
        write_output(loop, "text\n")


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "out"
    out.write_text("old\n")

    def fail(file) -> None:
        file.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(MicrosegError, match="No space left on device"):
        write_output(out, fail)
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_policy_compiled_over_itself_is_refused_and_kept(run_cli, tmp_path):
    policy = tmp_path / "home-lab.yaml"
    policy.write_text(Path(HOME_LAB).read_text())
    link = tmp_path / "same.yaml"
    link.symlink_to(policy)
    for output in (policy, link):
        result = run_cli("compile", str(policy), "-d", "andreasm-720xp-home", "-o", str(output))
        assert result.exit_code == 1, result.stdout
        assert f"cannot write {output}: it is the policy file this command reads" in result.stderr
    assert policy.read_text() == Path(HOME_LAB).read_text()
    # fmt over itself stays the in-place rewrite it is meant for.
    assert run_cli("fmt", str(policy), "-o", str(policy)).exit_code == 0


def test_sessions_exported_over_their_own_file_are_refused_and_kept(run_cli, tmp_path):
    sessions = tmp_path / "sessions.csv"
    raw = "protocol,src,sport,dst,dport\ntcp,10.0.0.1,50000,10.0.0.2,22\ntcp,10.0.0.1,50001,10.0.0.2,22\n"
    sessions.write_text(raw)
    result = run_cli("sessions", "export", "--store", str(sessions), "--csv", str(sessions))
    assert result.exit_code == 1
    assert "it is the session file this command reads" in result.stderr
    assert sessions.read_text() == raw  # not summarised into one eph row


# POSIX utility syntax guideline 13: "-" as an output file names standard output.
SESSION_FILE = str(EXAMPLES / "seed-lab-sessions.csv")
TO_STDOUT = {
    "fmt": ["fmt", HOME_LAB, "-o", "-"],
    "compile": ["compile", HOME_LAB, "-d", "andreasm-720xp-home", "-o", "-"],
    "sessions-csv": ["sessions", "export", "--store", SESSION_FILE, "--csv", "-"],
    "sessions-parquet": ["sessions", "export", "--store", SESSION_FILE, "--parquet", "-"],
}


def _run_process(args: list[str], cwd: Path, stdout=subprocess.PIPE):
    return subprocess.run(
        cli_command(*args), cwd=cwd, env=cli_env(), stdout=stdout, stderr=subprocess.PIPE
    )


@pytest.mark.parametrize("name", sorted(TO_STDOUT))
def test_a_dash_writes_to_standard_output_not_a_file_named_dash(tmp_path, name):
    args = TO_STDOUT[name]
    done = _run_process(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "-").exists()
    to_file = _run_process([*args[:-1], str(tmp_path / "out")], tmp_path)
    assert to_file.returncode == 0, to_file.stderr
    assert done.stdout == (tmp_path / "out").read_bytes()  # nothing else on stdout
    assert done.stdout


def test_export_dash_writes_the_revision_to_standard_output(tmp_path):
    env = cli_env(MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}")
    run = [
        subprocess.run(cli_command(*args), cwd=tmp_path, env=env, capture_output=True)
        for args in (["import", HOME_LAB], ["export", "-o", "-"], ["export"])
    ]
    assert [done.returncode for done in run] == [0, 0, 0], run
    assert run[1].stdout == run[2].stdout and run[1].stdout.startswith(b"devices:")
    assert not (tmp_path / "-").exists()


def test_dot_slash_dash_is_a_file_named_dash(tmp_path):
    done = _run_process(["fmt", HOME_LAB, "-o", "./-"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "-").read_bytes().startswith(b"devices:") and done.stdout == b""


def test_parquet_is_not_written_to_a_terminal(tmp_path):
    leader, follower = os.openpty()
    try:
        done = _run_process(TO_STDOUT["sessions-parquet"], tmp_path, stdout=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 1
    assert b"Parquet is binary: not written to a terminal" in done.stderr
    assert not (tmp_path / "-").exists()


def test_compile_to_standard_output_with_json_is_refused(run_cli):
    result = run_cli("compile", HOME_LAB, "-d", "andreasm-720xp-home", "-o", "-", "--json")
    assert result.exit_code == 1
    assert "--output - and --json both write to standard output" in result.stderr
    assert result.stdout == ""


def test_the_output_options_say_that_a_dash_is_standard_output(run_cli):
    for command in (["fmt"], ["compile"], ["export"], ["sessions", "export"]):
        result = run_cli(*command, "--help")
        assert "'-': standard output" in " ".join(result.stdout.split()), command
