"""password authorization: account password hashes, lockout, counted failures

Revision ID: 0008_passwords
Revises: 0006_retention
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0008_passwords"
down_revision = "0006_retention"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("password_locked_until", sa.DateTime(timezone=True), nullable=True)
        )

    op.create_table(
        "password_failure",
        sa.Column("id", _ID, nullable=False),
        sa.Column("login", sa.String(length=128), nullable=False),
        sa.Column("account_id", _ID, nullable=True),
        sa.Column("sender", sa.String(length=512), nullable=False),
        sa.Column("inbound_id", _ID, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_password_failure_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_message.id"],
            name=op.f("fk_password_failure_inbound_id_inbound_message"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_failure")),
    )
    with op.batch_alter_table("password_failure", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_password_failure_login"), ["login"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_password_failure_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_password_failure_sender"), ["sender"], unique=False)
        batch_op.create_index(batch_op.f("ix_password_failure_at"), ["at"], unique=False)


def downgrade() -> None:
    op.drop_table("password_failure")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("password_locked_until")
        batch_op.drop_column("password_hash")
