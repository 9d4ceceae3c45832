"""Initial store: mainline revisions with their objects, workspaces with their changes.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from microseg.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["revisions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("parent_id"),
    )
    mainline = op.create_table(
        "mainline",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("head_revision_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["head_revision_id"], ["revisions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(mainline, [{"id": 1, "head_revision_id": None}])
    op.create_table(
        "revision_objects",
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["revision_id"], ["revisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("revision_id", "section", "name"),
    )
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("base_revision_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("submitted_revision_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "state IN ('open', 'submitted', 'abandoned')", name="ck_workspaces_state"
        ),
        sa.ForeignKeyConstraint(["base_revision_id"], ["revisions.id"]),
        sa.ForeignKeyConstraint(["submitted_revision_id"], ["revisions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_workspaces_name", "workspaces", ["name"])
    op.create_index(
        "uq_workspaces_open_name",
        "workspaces",
        ["name"],
        unique=True,
        sqlite_where=sa.text("state = 'open'"),
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_table(
        "workspace_changes",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_id", "section", "name"),
    )


def downgrade() -> None:
    op.drop_table("workspace_changes")
    op.drop_index("uq_workspaces_open_name", table_name="workspaces")
    op.drop_index("ix_workspaces_name", table_name="workspaces")
    op.drop_table("workspaces")
    op.drop_table("revision_objects")
    op.drop_table("mainline")
    op.drop_table("revisions")
