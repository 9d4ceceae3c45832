"""Policy Monitor tests reuse change control's fixtures: a store in the environment and the
seed's switch and vZTX as eAPI test doubles."""

from __future__ import annotations

import sys

from support import ROOT

sys.path.insert(0, str(ROOT / "tests" / "deploy"))
sys.path.insert(0, str(ROOT / "tests" / "targets"))
sys.path.insert(0, str(ROOT / "tests" / "flows"))  # the seed lab's traffic (metrics tests)

from tests.deploy.conftest import lab, store_env, switch, vztx  # noqa: F401 (fixtures)
