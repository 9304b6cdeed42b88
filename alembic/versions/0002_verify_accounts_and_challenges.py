"""accounts and challenges

Revision ID: 0002_verify
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0002_verify"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("login", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("login", name=op.f("uq_account_login")),
    )
    op.create_table(
        "account_address",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("address", sa.String(length=512), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_account_address_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_address")),
        sa.UniqueConstraint(
            "account_id", "address", "role", name=op.f("uq_account_address_account_id")
        ),
    )
    with op.batch_alter_table("account_address", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_address_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_account_address_address"), ["address"], unique=False)

    op.create_table(
        "account_identifier",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_account_identifier_account_id_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_identifier")),
        sa.UniqueConstraint("kind", "value", name=op.f("uq_account_identifier_kind")),
    )
    with op.batch_alter_table("account_identifier", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_identifier_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "challenge",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("admin_address", sa.String(length=512), nullable=False),
        sa.Column("requester", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_challenge_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_challenge_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenge")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_challenge_token_hash")),
    )
    with op.batch_alter_table("challenge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_challenge_ticket_id"), ["ticket_id"], unique=False)

    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auth", sa.JSON(), nullable=True))

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        # Tickets opened before verification existed were never authorized.
        batch_op.add_column(
            sa.Column(
                "authorization", sa.String(length=24), nullable=False, server_default="consultative"
            )
        )
        batch_op.add_column(
            sa.Column(
                "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_index(batch_op.f("ix_ticket_account_id"), ["account_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_ticket_account_id_account"), "account", ["account_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_ticket_account_id_account"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_ticket_account_id"))
        batch_op.drop_column("account_id")
        batch_op.drop_column("authorization")

    with op.batch_alter_table("article", schema=None) as batch_op:
        batch_op.drop_column("auth")

    with op.batch_alter_table("challenge", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_challenge_ticket_id"))

    op.drop_table("challenge")
    with op.batch_alter_table("account_identifier", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_identifier_account_id"))

    op.drop_table("account_identifier")
    with op.batch_alter_table("account_address", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_address_address"))
        batch_op.drop_index(batch_op.f("ix_account_address_account_id"))

    op.drop_table("account_address")
    op.drop_table("account")
