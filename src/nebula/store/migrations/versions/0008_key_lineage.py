"""API keys name the key that made them by its id: `created_by` `key:NAME` (an API key) or
`node:NAME` (a service token) becomes `key:PREFIX`.

A name is free again once its key is revoked, so it does not tell which key made another; the
prefix does. Each row is matched to the key of that name and kind that was active when the row
was made: at most one was, as names are unique among active keys. A row matching none is left
as it was (it then names no key's lineage).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Row

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

keys = sa.table(
    "api_keys",
    sa.column("id", sa.String),
    sa.column("prefix", sa.String),
    sa.column("name", sa.String),
    sa.column("kind", sa.String),
    sa.column("created_by", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("revoked_at", sa.DateTime(timezone=True)),
)
_LABELS = {"key": "key", "node": "service"}  # how a caller was named, by the kind of its key


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(keys)).all()
    for row in rows:
        label, _, name = (row.created_by or "").partition(":")
        maker = _maker(rows, _LABELS.get(label), name, row)
        if maker is not None:
            _set_creator(row.id, f"key:{maker.prefix}")


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(keys)).all()
    by_prefix = {row.prefix: row for row in rows}
    for row in rows:
        label, _, prefix = (row.created_by or "").partition(":")
        maker = by_prefix.get(prefix) if label == "key" else None
        if maker is not None:
            named = "node" if maker.kind == "service" else "key"
            _set_creator(row.id, f"{named}:{maker.name}")


def _maker(
    rows: Sequence[Row[Any]], kind: str | None, name: str, made: Row[Any]
) -> Row[Any] | None:
    """The key of `kind` and `name` that was active when `made` was made."""
    return next(
        (
            key
            for key in rows
            if (key.kind, key.name) == (kind, name)
            and key.created_at <= made.created_at
            and (key.revoked_at is None or key.revoked_at >= made.created_at)
        ),
        None,
    )


def _set_creator(key_id: str, created_by: str) -> None:
    op.execute(sa.update(keys).where(keys.c.id == key_id).values(created_by=created_by))
