"""Alembic environment: runs the migrations on the connection `nebula.store.db.migrate` passes.

There is no alembic.ini: `migrate` configures Alembic in code and owns the transaction.
"""

from alembic import context

connection = context.config.attributes["connection"]
# SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
