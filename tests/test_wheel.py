"""The wheel is what a newcomer installs: built from this checkout, installed into a fresh
venv, `microseg demo` must run from it, with the examples it ships as package data.

Offline-capable: the wheel is built without build isolation (the test extra pins a modern
setuptools) and installed with `--no-index --no-deps`; its dependencies come from the venv
running the tests through a `.pth` line (which, unlike a site dir, does not run that venv's
own `.pth` files, so its editable microseg stays out), and `pip check` verifies that the
wheel's declared requirements are met by them."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support import EXAMPLES, ROOT

COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", ".hypothesis"
)


def _run(*argv: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=900, **kwargs
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


def _example_files() -> dict[str, bytes]:
    return {
        path.relative_to(EXAMPLES).as_posix(): path.read_bytes()
        for path in sorted(EXAMPLES.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    build_root = tmp_path_factory.mktemp("wheel")
    checkout = build_root / "checkout"
    shutil.copytree(ROOT, checkout, symlinks=True, ignore=COPY_IGNORE)
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-build-isolation",
        "--no-deps",
        "--no-index",
        "-w",
        build_root / "dist",
        checkout,
    )
    (built,) = (build_root / "dist").glob("microseg-*.whl")
    return built


def test_wheel_ships_the_examples_and_the_license(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        shipped = {
            name.removeprefix("microseg/examples/"): archive.read(name)
            for name in names
            if name.startswith("microseg/examples/") and not name.endswith("/")
        }
        licenses = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
        assert licenses, names
        assert archive.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "License-Expression: Apache-2.0" in archive.read(metadata).decode()
    assert shipped == _example_files()
    assert all(n.startswith(("microseg/", "microseg-")) for n in names), names


def test_wheel_ships_the_web_uis_templates_stylesheet_and_vendored_scripts(wheel):
    web = ROOT / "src" / "microseg" / "server" / "web"
    expected = {
        "microseg/server/web/" + path.relative_to(web).as_posix()
        for folder in ("templates", "static")
        for path in (web / folder).rglob("*")
        if path.is_file()
    }
    assert "microseg/server/web/static/vendor/htmx/htmx.min.js" in expected
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("microseg/server/web/")}
    assert expected <= shipped, sorted(expected - shipped)


def test_microseg_demo_runs_from_the_wheel_in_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python)
    _run(*pip, "install", "--no-index", "--no-deps", "--no-compile", wheel)
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    dependencies = "\n".join(site.getsitepackages()) + "\n"
    (Path(purelib.stdout.strip()) / "test-dependencies.pth").write_text(dependencies)
    _run(*pip, "check")

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "MICROSEG_", "PYTEST"))
    }
    env.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "home" / "data"))
    where = _run(python, "-c", "import microseg; print(microseg.__file__)", cwd=tmp_path, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout
    demo = _run(venv / "bin" / "microseg", "demo", cwd=tmp_path, env=env)
    assert "internal error" not in demo.stdout + demo.stderr
    assert "traffic-policy input vrf_all_home physical" in demo.stdout
    assert "Sessions: 15" in demo.stdout or "15 sessions" in demo.stdout
