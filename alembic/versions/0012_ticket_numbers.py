"""ticket numbers from a sequence on PostgreSQL

Revision ID: 0012_ticket_numbers
Revises: 0011_webhooks
Create Date: 2026-12-06

On PostgreSQL a ticket's number comes from the sequence ``ticket_number_seq``, the
column's default, taken inside the ticket's INSERT (and handed back by its RETURNING):
no round trip of its own, and no row lock on the counter
held until the batch commits (which made two daemons' batch transactions wait for one
another).  A sequence is not rolled back, so a message whose savepoint fails leaves a
gap in the numbers; numbers stay unique and increasing.  The sequence starts after the
highest number the counter or the tickets hold, and is owned by ``ticket.number`` (it
goes with the table, and ``TRUNCATE … RESTART IDENTITY`` restarts it).  SQLite keeps
the counter row: it has one writer at a time anyway.
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0012_ticket_numbers"
down_revision = "0011_webhooks"
branch_labels = None
depends_on = None

SEQUENCE = "ticket_number_seq"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(f"CREATE SEQUENCE {SEQUENCE} AS bigint MINVALUE 1 OWNED BY ticket.number")
    last = bind.scalar(
        sa.text(
            "SELECT GREATEST((SELECT value FROM counter WHERE name = 'ticket'),"
            " (SELECT max(number) FROM ticket), 0)"
        )
    )
    if last:
        bind.execute(sa.text(f"SELECT setval('{SEQUENCE}', :last, true)"), {"last": int(last)})
    op.execute(f"ALTER TABLE ticket ALTER COLUMN number SET DEFAULT nextval('{SEQUENCE}')")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE ticket ALTER COLUMN number DROP DEFAULT")
    # The counter takes over where the sequence stopped.
    bind.execute(
        sa.text(
            "UPDATE counter SET value = GREATEST(value, (SELECT coalesce(max(number), 0)"
            " FROM ticket)) WHERE name = 'ticket'"
        )
    )
    op.execute(f"DROP SEQUENCE {SEQUENCE}")
