"""History as object versions: a revision stores the objects it changes, not a copy of all.

`revision_objects` (every object of every revision) becomes `object_versions`: one row per
run of consecutive revisions in which an object keeps the same body, valid from the first
revision of the run up to (not including) the revision that changed or deleted it, or to
the head (valid_to NULL). Every revision reads back the same objects with the same bodies;
the downgrade expands the versions back into one row per object and revision.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Rows written per INSERT while converting: bounds memory on a large history.
BATCH = 5000

revisions = sa.table("revisions", sa.column("id", sa.Integer()))
revision_objects = sa.table(
    "revision_objects",
    sa.column("revision_id", sa.Integer()),
    sa.column("section", sa.String()),
    sa.column("name", sa.String()),
    sa.column("body", sa.Text()),
)
object_versions = sa.table(
    "object_versions",
    sa.column("section", sa.String()),
    sa.column("name", sa.String()),
    sa.column("valid_from", sa.Integer()),
    sa.column("valid_to", sa.Integer()),
    sa.column("body", sa.Text()),
)


def upgrade() -> None:
    op.create_table(
        "object_versions",
        sa.Column("section", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("valid_from", sa.Integer(), nullable=False),
        sa.Column("valid_to", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "valid_to IS NULL OR valid_to > valid_from", name="ck_object_versions_interval"
        ),
        sa.ForeignKeyConstraint(["valid_from"], ["revisions.id"]),
        sa.ForeignKeyConstraint(["valid_to"], ["revisions.id"]),
        sa.PrimaryKeyConstraint("section", "name", "valid_from"),
    )
    op.create_index(
        "uq_object_versions_current",
        "object_versions",
        ["section", "name"],
        unique=True,
        sqlite_where=sa.text("valid_to IS NULL"),
        postgresql_where=sa.text("valid_to IS NULL"),
    )
    connection = op.get_bind()
    batch: list[dict] = []
    for version in _versions(connection):
        batch.append(version)
        if len(batch) >= BATCH:
            connection.execute(object_versions.insert(), batch)
            batch = []
    if batch:
        connection.execute(object_versions.insert(), batch)
    op.drop_table("revision_objects")


def _versions(connection: sa.Connection) -> Iterator[dict]:
    """The versions of every object, from its rows in revision order: a run of revisions that
    follow each other with the same body is one version."""
    numbers = list(connection.scalars(sa.select(revisions.c.id).order_by(revisions.c.id)))
    # The revision after each one (None after the head): where a version ends.
    following: dict[int, int | None] = dict(itertools.pairwise(numbers))
    if numbers:
        following[numbers[-1]] = None
    rows = connection.execute(
        sa.select(
            revision_objects.c.section,
            revision_objects.c.name,
            revision_objects.c.revision_id,
            revision_objects.c.body,
        )
        .order_by(
            revision_objects.c.section, revision_objects.c.name, revision_objects.c.revision_id
        )
        .execution_options(yield_per=BATCH)
    )
    version: dict | None = None
    last = 0  # the last revision the open version was seen in
    for section, name, number, body in rows:
        if (
            version is not None
            and (version["section"], version["name"], version["body"]) == (section, name, body)
            and following[last] == number
        ):
            last = number
            continue
        if version is not None:
            yield {**version, "valid_to": following[last]}
        version = {"section": section, "name": name, "valid_from": number, "body": body}
        last = number
    if version is not None:
        yield {**version, "valid_to": following[last]}


def downgrade() -> None:
    op.create_table(
        "revision_objects",
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["revision_id"], ["revisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("revision_id", "section", "name"),
    )
    valid = sa.and_(
        object_versions.c.valid_from <= revisions.c.id,
        sa.or_(object_versions.c.valid_to.is_(None), object_versions.c.valid_to > revisions.c.id),
    )
    op.execute(
        revision_objects.insert().from_select(
            ["revision_id", "section", "name", "body"],
            sa.select(
                revisions.c.id,
                object_versions.c.section,
                object_versions.c.name,
                object_versions.c.body,
            ).select_from(revisions.join(object_versions, valid)),
        )
    )
    op.drop_index("uq_object_versions_current", table_name="object_versions")
    op.drop_table("object_versions")
