"""`microseg lab up` where root lacks the capabilities network namespaces need (a container
without --privileged): one clear line, exit 1, nothing made."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from support import cli_command, cli_env

pytestmark = pytest.mark.system


@pytest.mark.parametrize(
    ("dropped", "lacking"),
    [("-all", "CAP_NET_ADMIN and CAP_SYS_ADMIN"), ("-net_admin", "CAP_NET_ADMIN")],
)
def test_root_without_network_capabilities_is_told_so_before_anything_is_made(
    tmp_path, dropped, lacking
):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to drop capabilities")
    env = cli_env(
        MICROSEG_LAB_DIR=str(tmp_path / "state"),
        MICROSEG_LAB_NAME=f"mst{uuid.uuid4().hex[:5]}",
        MICROSEG_DATABASE_URL=f"sqlite:///{tmp_path / 'microseg.db'}",
    )
    drop = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", f"--bounding-set={dropped}"]
    result = subprocess.run(
        [*drop, "--", *cli_command("lab", "up")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"error: the lab needs {lacking} (network namespaces, nftables), which this root "
        "process has not got: in a container, run it with those capabilities (e.g. "
        "--privileged)\n"
    )
    assert not (tmp_path / "state").exists()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert env["MICROSEG_LAB_NAME"] not in namespaces
