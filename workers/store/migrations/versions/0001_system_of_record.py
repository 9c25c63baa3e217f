"""The system of record: links, history, outcomes, dead letters, audit, connections (#20).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("connection", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("zoho_id", sa.String(200), nullable=False),
        sa.Column("xero_id", sa.String(64), nullable=True),
        sa.Column("shares_with", sa.String(200), nullable=True),
        sa.Column("value", sa.Text, nullable=True),
        sa.Column("pending_key", sa.String(200), nullable=True),
        sa.Column("pending_at", sa.Float, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("connection", "kind", "zoho_id", name="uq_links_zoho"),
    )
    op.create_index(
        "uq_links_xero",
        "links",
        ["connection", "kind", "xero_id"],
        unique=True,
        sqlite_where=sa.text("xero_id IS NOT NULL"),
        postgresql_where=sa.text("xero_id IS NOT NULL"),
    )
    op.create_table(
        "history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("connection", sa.String(200), nullable=False),
        sa.Column("record_key", sa.String(400), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("stage", sa.String(200), nullable=False),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_history_record_key", "history", ["record_key"])
    op.create_index("ix_history_at", "history", ["at"])
    op.create_table(
        "outcomes",
        sa.Column("connection", sa.String(200), primary_key=True),
        sa.Column("record_key", sa.String(400), primary_key=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
    )
    op.create_index("ix_outcomes_at", "outcomes", ["at"])
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_by", sa.String(200), nullable=False, server_default=""),
        sa.Column("status_at", sa.String(40), nullable=False, server_default=""),
        sa.Column("stage", sa.String(200), nullable=False),
        sa.Column("connection", sa.String(200), nullable=False),
        sa.Column("module", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("error_kind", sa.String(64), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("hint", sa.Text, nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("traceback", sa.Text, nullable=False),
        sa.Column("failed_at", sa.String(40), nullable=False),
        sa.Column("legacy_id", sa.String(64), nullable=True, unique=True),
    )
    op.create_index("ix_dead_letters_status", "dead_letters", ["status"])
    op.create_index("ix_dead_letters_connection", "dead_letters", ["connection"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("target", sa.String(400), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_target", "audit", ["target"])
    op.create_table(
        "connections",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("secrets", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("connections", "audit", "dead_letters", "outcomes", "history", "links"):
        op.drop_table(table)
