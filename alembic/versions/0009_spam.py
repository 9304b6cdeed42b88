"""spam: rspamd's answer recorded with a stored message; released from the quarantine

Revision ID: 0009_spam
Revises: 0008_passwords
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0009_spam"
down_revision = "0008_passwords"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scan", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_column("released_at")
        batch_op.drop_column("scan")
