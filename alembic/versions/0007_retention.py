"""retention: mark raw messages and attachment bytes that the purge emptied

Revision ID: 0006_retention
Revises: 0005_conversations
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0006_retention"
down_revision = "0005_conversations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blob", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_column("purged_at")

    with op.batch_alter_table("blob", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
