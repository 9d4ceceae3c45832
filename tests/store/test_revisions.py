"""Mainline revisions on SQLite and PostgreSQL: import, read back, log, rollback, schema."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from microseg.model import Group, MicrosegError, PolicySet, Rule
from microseg.policyfile import dump_policy, load_policy
from microseg.store import (
    DATABASE_URL_ENV,
    Imported,
    InvalidChange,
    NotFound,
    database_url,
    open_store,
)
from microseg.store.schema import Base, ObjectVersion, Revision

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_STAGES = ("home-lab-dns-ntp.yaml", "home-lab-monitor.yaml", "home-lab.yaml")


def _row_counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            revisions = connection.scalar(select(func.count()).select_from(Revision))
            objects = connection.scalar(select(func.count()).select_from(ObjectVersion))
            return revisions, objects
    finally:
        engine.dispose()


def _by_key(policy_set: PolicySet) -> dict:
    return {(section, obj.name): obj for section, obj in policy_set.objects()}


def test_an_empty_store_has_no_head_and_an_empty_log(store):
    assert store.head() is None
    assert store.log() == []
    with pytest.raises(NotFound, match="no revision 1 \\(the store is empty\\)"):
        store.revision_policy(1)


def test_the_seed_stages_become_three_revisions_that_read_back_byte_identical(store):
    for number, file in enumerate(SEED_STAGES, 1):
        policy_set = load_policy(EXAMPLES / file)
        assert store.import_policy(policy_set, "andreas", f"stage {file}") == Imported(number, True)
    assert store.head() == 3
    for number, file in enumerate(SEED_STAGES, 1):
        stored, original = store.revision_policy(number), load_policy(EXAMPLES / file)
        # Same objects (the store keeps them in canonical order, not file order) ...
        assert _by_key(stored) == _by_key(original)
        # ... so the same canonical YAML, byte for byte.
        assert dump_policy(stored) == dump_policy(original)


def test_the_log_is_the_audit_trail_newest_first(store, monkeypatch):
    monkeypatch.setenv("MICROSEG_AUTHOR", "netops")
    for file in SEED_STAGES:
        store.import_policy(load_policy(EXAMPLES / file), None, f"import {file}")
    log = store.log()
    assert [(r.id, r.parent, r.author, r.message) for r in log] == [
        (3, 2, "netops", "import home-lab.yaml"),
        (2, 1, "netops", "import home-lab-monitor.yaml"),
        (1, None, "netops", "import home-lab-dns-ntp.yaml"),
    ]
    assert all(r.created_at.tzinfo is not None for r in log)
    assert log[0].created_at >= log[1].created_at >= log[2].created_at
    assert [r.id for r in store.log(limit=1)] == [3]
    assert store.revision_info(2) == log[1]


def test_an_invalid_policy_set_is_refused_and_nothing_is_written(store, store_url):
    store.import_policy(load_policy(EXAMPLES / "home-lab-dns-ntp.yaml"), "a", "first")
    before = _row_counts(store_url)
    # model_construct skips validation: the store must validate what it stores itself.
    dangling = PolicySet.model_construct(
        groups=(Group(name="web", prefixes=["10.0.0.0/24"]),),
        rules=(Rule(name="r1", sources=["web"], destinations=["nothere"], services="any"),),
    )
    with pytest.raises(InvalidChange) as refused:
        store.import_policy(dangling, "a", "broken")
    assert [str(p) for p in refused.value.problems] == [
        "rule 'r1' destinations.0: unknown group 'nothere'"
    ]
    assert store.head() == 1
    assert _row_counts(store_url) == before


def test_a_write_failing_midway_rolls_back_the_whole_import(store, store_url, monkeypatch):
    import microseg.store.store as store_module

    store.import_policy(load_policy(EXAMPLES / "home-lab-dns-ntp.yaml"), "a", "first")
    before = _row_counts(store_url)
    real_insert = store_module.insert

    def insert_failing_on_objects(table):
        # The revision row is already flushed, and the versions of the objects it changes
        # already ended, when its new versions are inserted.
        if table is ObjectVersion:
            raise RuntimeError("disk full")
        return real_insert(table)

    monkeypatch.setattr(store_module, "insert", insert_failing_on_objects)
    with pytest.raises(RuntimeError, match="disk full"):
        store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "a", "second")
    monkeypatch.undo()
    assert store.head() == 1
    assert [r.id for r in store.log()] == [1]
    assert _row_counts(store_url) == before
    first = load_policy(EXAMPLES / "home-lab-dns-ntp.yaml")
    assert dump_policy(store.revision_policy(1)) == dump_policy(first)  # versions still open
    assert store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "a", "second").revision == 2


def test_an_empty_policy_is_a_revision_with_no_objects(store):
    assert store.import_policy(PolicySet(), "a", "empty") == Imported(1, True)
    assert store.revision_policy(1) == PolicySet()


def test_importing_the_heads_own_policy_makes_no_revision(store, store_url):
    store.import_policy(load_policy(EXAMPLES / "home-lab-dns-ntp.yaml"), "a", "first")
    store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "a", "second")
    before = _row_counts(store_url)
    # Read back from the store or loaded again from the file: the same bodies, no revision.
    assert store.import_policy(store.revision_policy(2), "b", "again") == Imported(2, False)
    assert store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "b", "again") == (
        Imported(2, False)
    )
    assert _row_counts(store_url) == before
    assert [r.message for r in store.log()] == ["second", "first"]
    # An older revision's policy is a change from the head: a revision.
    assert store.import_policy(store.revision_policy(1), "b", "back") == Imported(3, True)


def test_an_unchanged_import_still_refuses_a_bad_author_or_message(store):
    store.import_policy(PolicySet(), "a", "empty")
    with pytest.raises(MicrosegError, match="no control characters"):
        store.import_policy(PolicySet(), "a\nb", "m")
    with pytest.raises(MicrosegError, match="no NUL"):
        store.import_policy(PolicySet(), "a", "m\x00")


def test_opening_a_fresh_database_creates_the_schema_the_models_describe(store_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with open_store(store_url) as opened:
        assert opened.head() is None
        engine = opened._engine
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_a_database_from_a_newer_microseg_is_refused(store_url):
    with open_store(store_url) as opened, opened._engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    refused = pytest.raises(MicrosegError, match=r"schema revision '9999'.*newer microseg")
    with refused, open_store(store_url):
        pass


def test_an_unreachable_database_is_a_clear_error():
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://nobody:secret@127.0.0.1:{port}/nothing"
    refused = pytest.raises(MicrosegError, match=r"cannot open the store at postgresql\+psycopg://")
    with refused as error, open_store(url):
        pass
    assert "secret" not in str(error.value)


def test_the_default_store_is_sqlite_in_the_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    expected = tmp_path / "data" / "microseg" / "microseg.db"
    assert database_url() == f"sqlite:///{expected}"
    assert not (tmp_path / "data").exists()  # naming the store makes nothing
    with pytest.raises(MicrosegError, match="no store at"), open_store(create=False):
        pass
    assert not (tmp_path / "data").exists()  # nor does a read
    with open_store() as opened:
        opened.import_policy(PolicySet(), "a", "empty")
    assert expected.exists()
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert database_url() == f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert database_url("sqlite://") == "sqlite://"


def test_an_unsupported_database_url_is_a_clear_error():
    unsupported = pytest.raises(MicrosegError, match="unsupported database 'mysql'")
    with unsupported, open_store("mysql://u@localhost/x"):
        pass
    with pytest.raises(MicrosegError, match="invalid database URL"), open_store("not a url"):
        pass


@pytest.mark.parametrize("number", [0, -1, 2**31, 2**63, 10**20])
def test_a_revision_number_out_of_the_databases_range_is_not_found(store, number):
    # Revision ids are 32-bit integers on PostgreSQL and 64-bit on SQLite: a larger number
    # must still be "no such revision", not a driver overflow.
    store.import_policy(PolicySet(), "andreas", "empty")
    with pytest.raises(NotFound, match=f"no revision {number} \\(head is 1\\)"):
        store.revision_policy(number)
    with pytest.raises(NotFound, match=f"no revision {number} "):
        store.revision_info(number)
    with pytest.raises(NotFound, match=f"no revision {number} "):
        store.workspace_create("w", base=number)


@pytest.mark.parametrize("limit", [2**31, 2**63, 10**20])
def test_a_log_limit_beyond_any_number_of_revisions_shows_them_all(store, limit):
    store.import_policy(PolicySet(), "andreas", "first")
    store.import_policy(load_policy(EXAMPLES / "home-lab-dns-ntp.yaml"), "andreas", "second")
    assert [r.message for r in store.log(limit)] == ["second", "first"]


def test_a_sqlite_store_whose_directory_cannot_be_made_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    url = f"sqlite:///{tmp_path / 'a-file' / 'data' / 'microseg.db'}"
    refused = pytest.raises(MicrosegError, match=r"cannot open the store at sqlite:///.*a-file")
    with refused, open_store(url):
        pass
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "a-file"))
    refused = pytest.raises(MicrosegError, match=r"cannot create the store's directory .*a-file")
    with refused, open_store():
        pass
