"""Alembic environment: migrations run on the connection :func:`kospeech.service.db.migrate` hands over, or, from
Alembic's own command line (a downgrade), on the database of the ini file's ``sqlalchemy.url``."""

from alembic import context

from kospeech.service.db import create_db_engine, migration_connection
from kospeech.service.models import Base


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if "connection" in context.config.attributes:
    _run(context.config.attributes["connection"])
else:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("error: set sqlalchemy.url (the service's server.database_url) in the Alembic ini file")
    engine = create_db_engine(url)
    try:
        with migration_connection(engine) as connection:
            _run(connection)
    finally:
        engine.dispose()
