"""Alembic environment: runs on the connection `store.db.migrate` hands over, or on
`sqlalchemy.url` when invoked as `alembic -x url=... upgrade head`."""

from alembic import context
from sqlalchemy import create_engine

from store.db import Base

target_metadata = Base.metadata
config = context.config


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or \
        config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        run(conn)
