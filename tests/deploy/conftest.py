"""Change control against eAPI test doubles of the seed's switch and vZTX.

Every test gets its own SQLite store (MICROSEG_DATABASE_URL), author, and device login in
the environment; policies are the seed's examples pointed at the doubles' loopback ports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import ROOT

sys.path.insert(0, str(ROOT / "tests" / "targets"))

from deploy_lab import SWITCH, VZTX, pointed_at
from double_fixtures import switch, vztx  # noqa: F401 (fixtures)


@pytest.fixture
def store_env(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'microseg.db'}"
    monkeypatch.setenv("MICROSEG_DATABASE_URL", url)
    monkeypatch.setenv("MICROSEG_AUTHOR", "andreas")
    monkeypatch.setenv("MICROSEG_DEVICE_USERNAME", "admin")
    monkeypatch.setenv("MICROSEG_DEVICE_PASSWORD", "secret")
    monkeypatch.delenv("MICROSEG_CREDENTIALS_FILE", raising=False)
    return url


@pytest.fixture
def lab(tmp_path, switch, vztx):  # noqa: F811 (the fixtures imported above)
    """lab(example) -> the example's policy file, pointed at the seed doubles."""
    doubles = {SWITCH: switch, VZTX: vztx}

    def make(example: str) -> Path:
        return pointed_at(example, tmp_path, doubles)

    return make
