"""Each shortcut taken for speed agrees with the straightforward code it replaces."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import ipaddress
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.compile.intent import Match, PrefixFieldSet, ServiceFieldSet
from microseg.gc_pause import paused_garbage_collector
from microseg.model import PolicyError, PolicySet
from microseg.targets.eos.render import prefixes_text

networks = st.one_of(
    st.builds(
        lambda a, n: ipaddress.ip_network((a, n), strict=False),
        st.ip_addresses(v=4),
        st.integers(0, 32),
    ),
    st.builds(
        lambda a, n: ipaddress.ip_network((a, n), strict=False),
        st.ip_addresses(v=6),
        st.integers(0, 128),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(networks, max_size=6))
def test_prefix_text_is_str(prefixes):
    assert prefixes_text(tuple(prefixes)) == " ".join(map(str, prefixes))


def values(record) -> dict:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


@pytest.mark.parametrize("record", [Match, PrefixFieldSet, ServiceFieldSet])
def test_records_keep_the_dataclass_signature_and_stay_frozen(record):
    parameters = inspect.signature(record).parameters
    fields = dataclasses.fields(record)
    assert list(parameters) == [f.name for f in fields]
    assert [p.default for p in parameters.values()] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]
    required = {
        name: f"value-{name}"
        for name, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty
    }
    instance = record(**required)
    assert values(instance) == {f.name: required.get(f.name, f.default) for f in fields}
    with pytest.raises(dataclasses.FrozenInstanceError):
        instance.name = "other"
    assert dataclasses.replace(instance, name="other").name == "other"
    assert instance == record(*[values(instance)[f.name] for f in fields])
    assert hash(instance) == hash(record(**required))
    assert pickle.loads(pickle.dumps(instance)) == instance


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_state_is_restored(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with paused_garbage_collector():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(PolicyError):
            PolicySet.model_validate(
                {
                    "rules": [
                        {
                            "name": "r",
                            "sources": ["nowhere"],
                            "destinations": "any",
                            "services": "any",
                        }
                    ]
                }
            )
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_a_process_that_froze_objects_keeps_them_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_garbage_collector():
            [object() for _ in range(10)]
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
