"""PostgreSQL: keep ``chunks.text_search`` in the row (storage MAIN) instead of TOAST.

Ranking reads the tsvector of every matching chunk; stored out of line, each read is a lookup
in the TOAST table (about half of a keyword search's time), and the planner, not counting that
cost, preferred scanning the whole table to using the GIN index. Applies to rows written from
now on: older rows keep their out-of-line vectors until rewritten (re-ingesting their files, or
``UPDATE chunks SET text = text`` then ``VACUUM``). Nothing to do on SQLite.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE chunks ALTER COLUMN text_search SET STORAGE MAIN")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE chunks ALTER COLUMN text_search SET STORAGE EXTENDED")
