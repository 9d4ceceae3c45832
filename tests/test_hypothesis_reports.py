"""A failing property test must show its example: schemathesis (the API's property tests)
replaces Hypothesis's printer with one that prints nothing (`seed=,`), for every test of
the session once it is imported; tests/conftest.py puts the real printer back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


def test_a_failing_property_test_shows_its_example():
    @given(st.integers(min_value=7, max_value=7))
    @settings(database=None)
    def fails(seed: int) -> None:
        assert seed != 7

    with pytest.raises(AssertionError) as failure:
        fails()
    assert "seed=7," in "\n".join(getattr(failure.value, "__notes__", []))
