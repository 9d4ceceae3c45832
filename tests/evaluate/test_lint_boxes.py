"""Lint's term boxes: which terms meet, checked pair by pair, and one term's classes checked
against the packets of the tiny space of `test_lint_exact`.

`TermBoxes.meeting` finds partners through the address sides and services the terms are made
of (terms with an `any` source by their destination, with an `any` destination by their
source, the others along their narrower side); here every pair of terms is compared on all
six lines directly, so a partner the lookup misses, or one it invents, fails the test.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from tests.evaluate.test_lint_exact import BATCH, policy_sets

from microseg.compile.resolve import compile_all
from microseg.evaluate import CompiledDevice
from microseg.evaluate.lint.boxes import AddressLine, TermBoxes, distinct_rows, sorted_unique
from microseg.evaluate.lint.space import DecisionSpace
from microseg.model import PolicySet


def _boxes(policy_set) -> tuple[TermBoxes, object]:
    intent = compile_all(policy_set)["sw1"]
    matches = intent.policies[0].matches
    return TermBoxes(AddressLine(intent), intent, matches, np.arange(len(matches))), intent


def _intervals(boxes: TermBoxes, term: int) -> list[list[tuple[int, int]]]:
    """The term's intervals on each of the six lines."""
    lines = []
    for table, owners, _ in boxes.per_line:
        owner = owners[term]
        span = slice(table.start[owner], table.start[owner + 1])
        lines.append(list(zip(table.lo[span].tolist(), table.hi[span].tolist(), strict=True)))
    return lines


def _meet(left: list[tuple[int, int]], right: list[tuple[int, int]]) -> bool:
    return any(a <= d and c <= b for (a, b), (c, d) in itertools.product(left, right))


# Found by hypothesis: on a service line where some service has two intervals, the others
# were padded with the empty slot (1, 0), which "met" any interval holding 0 and 1, so the
# terms of s1 (source port 2, destination ports 0-1) and s1-reverse (source ports 0-1,
# destination port 2) were said to meet, though no packet fits both.
PADDING_MEETS_LOW_PORTS = PolicySet.model_validate(
    {
        "devices": [{"name": "sw1"}],
        "domains": [{"name": "d1", "devices": ["sw1"]}],
        "groups": [{"name": "g0", "prefixes": ["10.0.0.0/29"]}],
        "services": [
            {"name": "s0", "protocol": "tcp", "destination_ports": [0, 2]},
            {"name": "s1", "protocol": "tcp", "destination_ports": [0, 1], "source_ports": [2]},
        ],
        "rules": [
            {"name": "r0", "sources": "any", "destinations": ["g0"], "services": ["s0", "s1"]}
        ],
        "policies": [{"name": "p1", "id": 1, "domain": "d1", "rules": ["r0"]}],
    }
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_sets(effects=True))
@example(PADDING_MEETS_LOW_PORTS)
def test_meeting_terms_are_exactly_the_pairs_whose_boxes_meet(policy_set):
    boxes, _ = _boxes(policy_set)
    per_term = [_intervals(boxes, t) for t in range(len(boxes))]
    for term in range(len(boxes)):
        expected = [
            other
            for other in range(len(boxes))
            if all(_meet(a, b) for a, b in zip(per_term[term], per_term[other], strict=True))
        ]
        assert boxes.meets(term).tolist() == expected, term


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_sets())
def test_a_terms_region_holds_exactly_the_packets_it_accepts(policy_set):
    # Every enumerated packet the term accepts lies in one class of its region whose bits
    # are the terms (of those that meet it) that accept the packet too.
    boxes, intent = _boxes(policy_set)
    space = DecisionSpace(boxes, len(intent.policies[0].matches))
    device = CompiledDevice(intent)
    compiled = device.policies[0]
    source = device.address_cell_index(BATCH.family, BATCH.src)
    destination = device.address_cell_index(BATCH.family, BATCH.dst)
    services = compiled.service_rows(
        BATCH.protocol,
        device.ports.of_port[BATCH.sport],
        device.ports.of_port[BATCH.dport],
        BATCH.icmp_type,
    )
    accepted = compiled.source_rows[source] & compiled.destination_rows[destination] & services
    bits = np.unpackbits(accepted.view(np.uint8), axis=1, bitorder="little")[:, : len(boxes)]
    for term in range(len(boxes)):
        region = space.region(term)
        packets = np.flatnonzero(bits[:, term])
        if region is None:
            assert not len(packets)
            continue
        points = np.concatenate(list(region.grids()))
        rows = np.unpackbits(points.view(np.uint8), axis=1, bitorder="little")
        classes = {tuple(region.terms[np.flatnonzero(r[: len(region.terms)])]) for r in rows}
        seen = {tuple(np.flatnonzero(bits[p])) for p in packets}
        # Each packet's terms are a class of the region (classes no enumerated packet
        # reaches are fine: the tiny space has one address per cell, not every cell).
        assert seen <= classes, term


def test_distinct_rows_keeps_first_occurrences_in_order():
    rng = np.random.default_rng(1)
    for words in (1, 2, 5):
        rows = rng.integers(0, 3, (400, words)).astype(np.uint64)
        as_bytes = rows.view(np.dtype((np.void, words * 8))).reshape(-1)
        _, first = np.unique(as_bytes, return_index=True)
        assert (distinct_rows(rows) == rows[np.sort(first)]).all()
    assert sorted_unique(np.array([5, 1, 5, 3, 1])).tolist() == [1, 3, 5]
