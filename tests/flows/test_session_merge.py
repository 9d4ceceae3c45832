"""The session merge (flows/merge.py, a numpy hash-index merge) against the DuckDB GROUP BY
it replaced, kept here as the reference: same sessions, same aggregates, bit for bit, for
any split of the rows into merges, with counters at the edge of 2**64 and with key hashes
that collide (which must cost time, never a wrong merge)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microseg import duck
from microseg.flows import merge as merge_module
from microseg.flows.merge import KEY, ActiveSessions, key_hash
from microseg.flows.sessions import CANONICAL_COLUMNS

UINT64_MAX = 2**64 - 1


def _saturated_sum(column: str) -> str:
    return f"least(sum({column}), {UINT64_MAX})::UBIGINT AS {column}"


# The merge as the session table ran it on DuckDB until it moved to numpy.
REFERENCE_MERGE = f"""
SELECT {", ".join(KEY)},
       {_saturated_sum("a_packets")}, {_saturated_sum("a_bytes")},
       min(a_first) AS a_first, max(a_last) AS a_last, bit_or(a_flags) AS a_flags,
       max(a_request) AS a_request, max(a_exporter) AS a_exporter,
       {_saturated_sum("b_packets")}, {_saturated_sum("b_bytes")},
       min(b_first) AS b_first, max(b_last) AS b_last, bit_or(b_flags) AS b_flags,
       max(b_request) AS b_request, max(b_exporter) AS b_exporter,
       min(created) AS created, max(touched) AS touched
FROM rows GROUP BY ALL
"""
COLUMNS = [name for name in CANONICAL_COLUMNS if name != "hash"]


def reference(rows: dict[str, np.ndarray]) -> list[tuple]:
    import pyarrow as pa

    connection = duck.connect()
    connection.register("rows", pa.table({name: rows[name] for name in COLUMNS}))
    merged = connection.sql(REFERENCE_MERGE).to_arrow_table()
    return sorted(zip(*(merged.column(name).to_pylist() for name in COLUMNS), strict=True))


def as_tuples(sessions: ActiveSessions) -> list[tuple]:
    columns = [sessions.columns[name].tolist() for name in COLUMNS]
    return sorted(zip(*columns, strict=True))


SMALL = st.integers(0, 1000)
COUNTER = st.one_of(SMALL, st.integers(UINT64_MAX - 1000, UINT64_MAX), st.integers(0, UINT64_MAX))


@st.composite
def canonical_rows(draw) -> dict[str, np.ndarray]:
    """Rows over a small key space (so many merge); counters small (the merge adds them where
    they stand) or anywhere in unsigned64 (a sum may pass 2**64: the general path)."""
    count = draw(st.integers(1, 60))
    counter = COUNTER if draw(st.booleans()) else SMALL
    rows: dict[str, list] = {name: [] for name in COLUMNS}
    for _ in range(count):
        rows["vrf_id"].append(draw(st.sampled_from([0, 7])))
        rows["protocol"].append(draw(st.sampled_from([6, 17])))
        for end in ("low", "high"):
            rows[f"{end}_hi"].append(draw(st.sampled_from([0, 0x20010DB8 << 32])))
            rows[f"{end}_lo"].append(0xFFFF0A000000 | draw(st.integers(0, 2)))
            rows[f"{end}_port"].append(draw(st.sampled_from([53, 50000])))
        for side in ("a", "b"):
            rows[f"{side}_packets"].append(draw(counter))
            rows[f"{side}_bytes"].append(draw(counter))
            rows[f"{side}_first"].append(draw(st.integers(0, 2**63 - 1)))
            rows[f"{side}_last"].append(draw(st.integers(-1, 2**40)))
            rows[f"{side}_flags"].append(draw(st.integers(0, 0xFFFF)))
            rows[f"{side}_request"].append(draw(st.integers(0, 1)))
            rows[f"{side}_exporter"].append(draw(st.integers(0, 3)))
        rows["created"].append(draw(st.floats(0, 1e9)))
        rows["touched"].append(draw(st.floats(0, 1e9)))
    return {name: np.array(rows[name], CANONICAL_COLUMNS[name]) for name in COLUMNS}


def hashed(rows: dict[str, np.ndarray], colliding: bool) -> dict[str, np.ndarray]:
    """Rows with their key hash; `colliding`: a hash of the VRF alone (keys share hashes)."""
    hashes = rows["vrf_id"].astype(np.uint64) if colliding else key_hash(rows)
    return {**rows, "hash": hashes}


def merged_in_pieces(rows: dict[str, np.ndarray], cuts: list[int]) -> ActiveSessions:
    bounds = sorted({0, len(rows["hash"]), *(c % (len(rows["hash"]) + 1) for c in cuts)})
    pieces = [{n: c[a:b] for n, c in rows.items()} for a, b in itertools.pairwise(bounds)]
    sessions = ActiveSessions.of(pieces[:1])
    for piece in pieces[1:]:
        sessions.merge([piece])
    return sessions


@settings(max_examples=60, deadline=None)
@given(
    rows=canonical_rows(), cuts=st.lists(st.integers(0, 60), max_size=5), colliding=st.booleans()
)
def test_the_numpy_merge_equals_the_duckdb_group_by(rows, cuts, colliding):
    sessions = merged_in_pieces(hashed(rows, colliding), cuts)
    assert as_tuples(sessions) == reference(rows)
    assert len(set(as_tuples(sessions))) == len(sessions)  # each key once


def test_a_merge_that_fails_changes_nothing(monkeypatch):
    """The session table keeps its sessions when a merge fails (sessions.py): the merge
    checks and computes everything before it changes anything."""
    rng = np.random.default_rng(7)
    rows = {
        name: rng.integers(0, 3, 400).astype(kind)
        for name, kind in CANONICAL_COLUMNS.items()
        if name != "hash"
    }
    rows = hashed(rows, colliding=False)
    first = {name: column[:380] for name, column in rows.items()}
    second = {name: column[380:] for name, column in rows.items()}  # the index has room
    sessions = ActiveSessions.of([first])
    before = as_tuples(sessions)

    def failing_check(*_args):  # after the index took the new rows, before the columns
        raise MemoryError("the new sessions do not fit")

    with monkeypatch.context() as patch:
        patch.setattr(merge_module, "_sums_may_overflow", failing_check)
        with pytest.raises(MemoryError):
            sessions.merge([second])
    assert as_tuples(sessions) == before
    sessions.merge([second])
    assert as_tuples(sessions) == reference(rows)


def test_many_sessions_grow_the_index_and_every_one_is_found_again():
    rng = np.random.default_rng(3)
    count = 50_000
    rows = {name: np.zeros(count, kind) for name, kind in CANONICAL_COLUMNS.items()}
    rows["low_lo"] = 0xFFFF0A000000 | rng.permutation(count).astype(np.uint64)
    rows["high_lo"][:] = 0xFFFF0B000001
    rows["a_packets"][:] = 1
    rows = hashed(rows, colliding=False)
    sessions = ActiveSessions.of([{n: c[:1000] for n, c in rows.items()}])
    for start in range(1000, count, 7000):
        sessions.merge([{n: c[start : start + 7000] for n, c in rows.items()}])
    sessions.merge([rows])  # every session a second time
    assert len(sessions) == count
    assert sessions.columns["a_packets"].tolist() == [2] * count
