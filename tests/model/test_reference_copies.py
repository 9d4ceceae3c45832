"""The golden EOS configurations in examples/ are the seed's, byte for byte."""

from __future__ import annotations

import pytest

from support import REFERENCE, SHARED_REFERENCE


@pytest.mark.parametrize("name", ["seed-720xp-dns-ntp.eos", "seed-720xp-web-app.eos"])
def test_reference_copy_matches_shared(name):
    if not SHARED_REFERENCE.exists():
        pytest.skip("shared/reference is not beside this checkout")
    assert (REFERENCE / name).read_bytes() == (SHARED_REFERENCE / name).read_bytes()
