"""outbound mail: limits, suppression, bounce records, events

Revision ID: 0003_outbound
Revises: 0004_deploy
Create Date: 2026-11-23
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from alembic import op

revision = "0003_outbound"
down_revision = "0004_deploy"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("id", _ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ticket_id", _ID, nullable=True),
        sa.Column("outbox_id", _ID, nullable=True),
        sa.Column("inbound_id", _ID, nullable=True),
        sa.Column("address", sa.String(length=512), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbound_id"], ["inbound_message.id"], name=op.f("fk_event_inbound_id_inbound_message")
        ),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox_message.id"], name=op.f("fk_event_outbox_id_outbox_message")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_event_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index("ix_event_kind_created_at", ["kind", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_ticket_id"), ["ticket_id"], unique=False)

    op.create_table(
        "suppression",
        sa.Column("id", _ID, nullable=False),
        sa.Column("address", sa.String(length=512), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("outbox_id", _ID, nullable=True),
        sa.Column("ticket_id", _ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox_message.id"],
            name=op.f("fk_suppression_outbox_id_outbox_message"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_suppression_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppression")),
        sa.UniqueConstraint("address", name=op.f("uq_suppression_address")),
    )

    # Rows already queued get the values the new code would have given them: every
    # kind that existed before (ack) is automatic.
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("automatic", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column("recipient", sa.String(length=512), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("reason", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("released", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("delivery_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("delivery_action", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("delivery_detail", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("delivery_reported_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_outbox_message_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_outbox_message_recent", ["recipient", "created_at"], unique=False)

    conn = op.get_bind()
    outbox = sa.table(
        "outbox_message", sa.column("id", sa.Integer()), sa.column("recipient", sa.String())
    )
    for row_id, rcpt_to in conn.execute(sa.text("SELECT id, rcpt_to FROM outbox_message")):
        recipients = json.loads(rcpt_to) if isinstance(rcpt_to, str) else rcpt_to
        first = recipients[0].lower() if recipients else ""
        conn.execute(outbox.update().where(outbox.c.id == row_id).values(recipient=first))

    # The defaults only served the rows above; the application sets every value.
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.alter_column("automatic", server_default=None)
        batch_op.alter_column("recipient", server_default=None)
        batch_op.alter_column("released", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_recent")
        batch_op.drop_index("ix_outbox_message_created_at")
        for column in (
            "delivery_reported_at",
            "delivery_detail",
            "delivery_action",
            "delivery_status",
            "released",
            "reason",
            "recipient",
            "automatic",
        ):
            batch_op.drop_column(column)

    op.drop_table("suppression")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_ticket_id"))
        batch_op.drop_index("ix_event_kind_created_at")
    op.drop_table("event")
