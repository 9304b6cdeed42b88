"""outbox_message.inbound_id: link outgoing mail to the message it answers

Gives every log line about an acknowledgement the trace id of the inbound message and
lets the daemon time receipt → acknowledgement sent.

Revision ID: 0004_deploy
Revises: 0002_verify
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0004_deploy"
down_revision = "0002_verify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite can only add a foreign key by rebuilding the table.
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "inbound_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_message_inbound_id_inbound_message"),
            "inbound_message",
            ["inbound_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_outbox_message_inbound_id_inbound_message"), type_="foreignkey"
        )
        batch_op.drop_column("inbound_id")
