"""api: the panel API's idempotency keys

Revision ID: 0010_api
Revises: 0009_spam
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0010_api"
down_revision = "0009_spam"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_request",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_request")),
        sa.UniqueConstraint("token", "key", name=op.f("uq_api_request_token")),
    )
    op.create_index(op.f("ix_api_request_created_at"), "api_request", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_api_request_created_at"), table_name="api_request")
    op.drop_table("api_request")
