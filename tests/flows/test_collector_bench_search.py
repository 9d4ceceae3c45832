"""bench/collector.py's search, with scripted receivers in place of real trials: how losses,
zero-loss trials and senders that fall short of the rate asked decide the figures it prints
(the real trials run in the bench itself; nothing here is timed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench():
    """The bench as a module (it puts bench/ and src/ on sys.path and imports bench/decode.py:
    both undone after)."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("collector_bench", BENCH / "collector.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if name in ("collector_bench", "decode"):
                del sys.modules[name]


def scripted(bench, name: str, loses_from: float, sender_limit: float = float("inf")):
    """A receiver that loses nothing below `loses_from` records/s, with senders that offer
    at most `sender_limit`; returns (run, rates asked)."""
    asked: list[int] = []

    def run(_sender, data, rate, _options):
        asked.append(rate)
        offered = min(rate, sender_limit)
        seconds = 10.0
        datagrams = round(offered * seconds / bench.RECORDS_PER_DATAGRAM)
        offer = bench.Offer(rate, [datagrams], seconds)
        lost = 1 if offered >= loses_from else 0
        return bench.Trial(name, offer, offer.records, 1000, 1000 - lost, 0)

    return run, asked


def search(bench, **receivers):
    runs, asked = {}, {}
    for name, script in receivers.items():
        runs[name], asked[name] = scripted(bench, name, *script)
    return bench.search(None, None, None, runs), asked


def test_steps_up_then_bisects_to_the_first_loss(bench, capsys):
    state, asked = search(bench, microseg=(900_000,), nfcapd=(1_200_000,))
    assert asked["microseg"][:2] == [500_000, 750_000]
    assert state["microseg"]["bad"] == 937_500 and state["microseg"]["good"] == 890_625
    assert state["nfcapd"]["good"] == 1_195_312 and state["nfcapd"]["bad"] == 1_265_625
    assert bench.ratio(state["microseg"], state["nfcapd"]) == {"ratio_vs_nfcapd": 0.75}
    assert capsys.readouterr().err.count("\n") == len(asked["microseg"]) + len(asked["nfcapd"])


def test_a_sender_that_falls_short_ends_the_search_as_a_lower_bound(bench):
    # microseg never loses, but its trials starve the senders at 1.4 M: the search stops
    # there and counts what the senders did offer, not the rate asked
    state, asked = search(bench, microseg=(10e6, 1_410_000), nfcapd=(1_000_000,))
    assert asked["microseg"] == [500_000, 750_000, 1_125_000, 1_687_500]
    assert state["microseg"]["ceiling"] == 1_687_500 and state["microseg"]["bad"] is None
    assert state["microseg"]["good"] == 1_410_000
    assert state["microseg"]["best"].summary()["sender_short"]
    assert bench.ratio(state["microseg"], state["nfcapd"]) == {
        "ratio_vs_nfcapd": 1.43,
        "ratio_is": "a lower bound",
    }


def test_a_loss_at_a_short_rate_is_still_a_loss(bench):
    state, _ = search(bench, microseg=(1_300_000, 1_410_000), nfcapd=(1_000_000,))
    # 1,687,500 asked, 1,400,000 offered, lost: an upper bound as any loss; then bisected
    assert state["microseg"]["bad"] is not None and state["microseg"]["bad"] <= 1_687_500
    assert state["microseg"]["good"] < 1_300_000
    assert "ratio_is" not in bench.ratio(state["microseg"], state["nfcapd"])


def test_nfcapd_at_the_senders_limit_makes_the_ratio_an_upper_bound(bench):
    state, _ = search(bench, microseg=(900_000,), nfcapd=(10e6, 1_620_000))
    assert bench.ratio(state["microseg"], state["nfcapd"])["ratio_is"] == "an upper bound"
    both, _ = search(bench, microseg=(10e6, 1_620_000), nfcapd=(10e6, 1_620_000))
    assert both["microseg"]["good"] == both["nfcapd"]["good"] == 1_620_000
    assert bench.ratio(both["microseg"], both["nfcapd"])["ratio_is"].startswith("unknown")
