"""conversations: operators, ticket clocks and links, the install's threading key

Revision ID: 0005_conversations
Revises: 0002_imap
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0005_conversations"
down_revision = "0002_imap"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "operator",
        sa.Column("id", _ID, nullable=False),
        sa.Column("address", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator")),
        sa.UniqueConstraint("address", name=op.f("uq_operator_address")),
    )
    op.create_table(
        "install_key",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_install_key")),
    )
    # batch mode: SQLite adds the self-referencing foreign key by rebuilding the table.
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority_reason", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("assignee", sa.String(length=512), nullable=True))
        for column in (
            "first_response_due",
            "first_response_at",
            "escalated_at",
            "eta_at",
            "resolved_at",
            "closed_at",
        ):
            batch_op.add_column(sa.Column(column, _WHEN, nullable=True))
        batch_op.add_column(sa.Column("eta_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("linked_ticket_id", _ID, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_ticket_linked_ticket_id_ticket"), "ticket", ["linked_ticket_id"], ["id"]
        )
        batch_op.create_index(
            batch_op.f("ix_ticket_first_response_due"), ["first_response_due"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_first_response_due"))
        batch_op.drop_constraint(
            batch_op.f("fk_ticket_linked_ticket_id_ticket"), type_="foreignkey"
        )
        for column in (
            "linked_ticket_id",
            "eta_reason",
            "closed_at",
            "resolved_at",
            "eta_at",
            "escalated_at",
            "first_response_at",
            "first_response_due",
            "assignee",
            "priority_reason",
        ):
            batch_op.drop_column(column)
    op.drop_table("install_key")
    op.drop_table("operator")
