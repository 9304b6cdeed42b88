"""imap_cursor: how far each IMAP folder has been read

Revision ID: 0002_imap
Revises: 0003_outbound
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0002_imap"
down_revision = "0003_outbound"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_cursor",
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("folder", sa.String(length=300), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("baseline_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", "folder", name=op.f("pk_imap_cursor")),
    )


def downgrade() -> None:
    op.drop_table("imap_cursor")
