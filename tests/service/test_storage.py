"""Storage on SQLite and on the real PostgreSQL: migrations equal the models, keys are hashed, deletion cascades;
the kospeech-keys console script."""

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
import time_machine
from alembic import command as alembic_command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from conftest import postgres_schema, settings_for
from omegaconf import OmegaConf
from sqlalchemy import Engine, String, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from kospeech.cli import keys as keys_cli
from kospeech.cli import serve as serve_cli
from kospeech.cli import worker as worker_cli
from kospeech.errors import ConfigError, InvalidNameError, SchemaError
from kospeech.service.db import (
    MIGRATIONS_DIR,
    create_db_engine,
    migrate,
    migration_connection,
    session_factory,
    session_scope,
)
from kospeech.service.keys import authenticate, create_key, list_keys, revoke_key
from kospeech.service.models import AdapterVersion, ApiKey, Base, Job, Tenant, User, Utterance
from kospeech.service.settings import ServerConfig, load_settings
from kospeech.service.storage import Storage, storage_fault
from kospeech.service.training import AdapterJobRunner


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'service.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_db_engine(url)
    migrate(engine)
    migrate(engine)  # applying the migrations again is harmless (they are recorded)
    yield engine
    if request.param == "postgresql":
        Base.metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    engine.dispose()


def _index_definitions(engine: Engine) -> set:
    """Every index's definition as the database states it, quotes, schema names and spacing left out: what
    ``compare_metadata`` cannot compare (SQLite's indexes on expressions, partial indexes' conditions)."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        else:
            query = (
                "SELECT replace(indexdef, current_schema() || '.', '') FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )
        return {" ".join(row.replace('"', "").split()) for row in connection.exec_driver_sql(query).scalars()}


def test_migrations_create_exactly_the_models_schema(engine, request, tmp_path):
    """Review F, stop 40: ``compare_metadata`` passed with the case-folding unique indexes dropped or the pending-job
    index's condition changed; the indexes' definitions are now compared with those the models create."""
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    with contextlib.ExitStack() as stack:
        if engine.dialect.name == "sqlite":
            url = f"sqlite:///{tmp_path / 'from_models.db'}"
        else:
            url = stack.enter_context(postgres_schema())
        from_models = create_db_engine(url)
        stack.callback(from_models.dispose)
        Base.metadata.create_all(from_models)
        migrated = _index_definitions(engine)
        assert migrated == _index_definitions(from_models)
    assert any("lower(" in index and "user_id" in index for index in migrated)
    assert any("uq_jobs_user_pending" in index and "WHERE" in index for index in migrated)


def test_a_user_has_at_most_one_pending_job(engine):
    sessions = session_factory(engine)
    with session_scope(sessions) as session:
        create_key(session, "acme")
        tenant = session.scalar(select(Tenant))
        user = User(tenant_id=tenant.id, user_id="alice")
        session.add(user)
        session.flush()
        for status in ("succeeded", "failed", "succeeded", "queued"):  # finished jobs do not count
            session.add(Job(tenant_id=tenant.id, user_pk=user.id, adapter_type="head", status=status))
        user_pk, tenant_id = user.id, tenant.id
    for status in ("queued", "running"):
        with pytest.raises(IntegrityError), session_scope(sessions) as session:
            session.add(Job(tenant_id=tenant_id, user_pk=user_pk, adapter_type="head", status=status))
    with session_scope(sessions) as session:
        session.execute(update(Job).where(Job.status == "queued").values(status="succeeded"))
        session.add(Job(tenant_id=tenant_id, user_pk=user_pk, adapter_type="head", status="running"))
    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.status == "running")) == 1


def test_keys_are_stored_hashed_and_checked(engine):
    sessions = session_factory(engine)
    with session_scope(sessions) as session:
        key = create_key(session, "acme", admin=True)
        other = create_key(session, "acme")
    assert key.startswith("ksk_") and key.split()[-1] == key
    with session_scope(sessions) as session:
        rows = session.scalars(select(ApiKey)).all()
        assert len(rows) == 2 and session.scalar(select(func.count()).select_from(Tenant)) == 1
        stored = " ".join(f"{row.prefix} {row.digest}" for row in rows)
        assert key not in stored and key.split("_", 2)[2] not in stored
        assert hashlib.sha256(key.encode()).hexdigest() in stored
        assert authenticate(session, key).admin is True
        assert authenticate(session, other).admin is False
        for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), "ksk_x_y", "", "Bearer " + key, key + "_"):
            assert authenticate(session, wrong) is None
        assert revoke_key(session, key.split("_")[1]) is True
        assert revoke_key(session, key) is False  # already revoked
    with session_scope(sessions) as session:
        assert authenticate(session, key) is None and authenticate(session, other) is not None
        records = list_keys(session)
        assert [(record.tenant, record.admin, record.revoked_at is not None) for record in records] == [
            ("acme", True, True),
            ("acme", False, False),
        ]
        with pytest.raises(InvalidNameError):
            create_key(session, "../evil")


def test_deleting_a_user_deletes_every_row_of_theirs(engine):
    sessions = session_factory(engine)
    with session_scope(sessions) as session:
        create_key(session, "acme")
        tenant = session.scalar(select(Tenant))
        kept, gone = User(tenant_id=tenant.id, user_id="kept"), User(tenant_id=tenant.id, user_id="gone")
        session.add_all([kept, gone])
        session.flush()
        for user in (kept, gone):
            session.add(Utterance(user_pk=user.id, text="불 꺼 줘", duration=1.0, audio_file="x.wav"))
            session.add(AdapterVersion(user_pk=user.id, version=1, adapter_type="head", file="v.pt", active=True))
            session.add(Job(tenant_id=tenant.id, user_pk=user.id, adapter_type="head", status="succeeded"))
        gone_id = gone.id
    with session_scope(sessions) as session:
        session.delete(session.get(User, gone_id))
    with session_scope(sessions) as session:
        for model in (Utterance, AdapterVersion, Job):
            owners = session.scalars(select(model.user_pk)).all()
            assert owners and gone_id not in owners, model.__name__
        assert session.scalars(select(User.user_id)).all() == ["kept"]


def _rows_per_table(engine):
    with engine.connect() as connection:
        return [connection.scalar(select(func.count()).select_from(model)) for model in (User, Utterance, Job)]


def test_a_sqlite_migration_that_rebuilds_a_parent_table_keeps_its_children(tmp_path):
    """Review F, stop 40: migrations ran with SQLite's foreign keys on, and Alembic changes a SQLite table by copying
    it and dropping the old one: a future migration of ``users`` would have deleted every utterance, version and job
    (``ON DELETE CASCADE``). Foreign keys are now off during a migration and checked before it commits."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'service.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    with session_scope(sessions) as session:
        create_key(session, "acme")
        user = User(tenant_id=session.scalar(select(Tenant.id)), user_id="alice")
        session.add(user)
        session.flush()
        session.add(Utterance(user_pk=user.id, text="불 꺼 줘", duration=1.0, audio_file="x.wav"))
        session.add(Job(tenant_id=user.tenant_id, user_pk=user.id, adapter_type="head", status="succeeded"))
    with migration_connection(engine) as connection:
        with Operations(MigrationContext.configure(connection)).batch_alter_table("users", recreate="always") as batch:
            batch.alter_column("user_id", existing_type=String(64), existing_nullable=False)
    assert _rows_per_table(engine) == [1, 1, 1]
    with pytest.raises(SchemaError, match=r"left 2 rows in jobs, utterances whose parent row is gone"):
        with migration_connection(engine) as connection:
            connection.exec_driver_sql("DELETE FROM users")
    assert _rows_per_table(engine) == [1, 1, 1]  # nothing of the refused migration was committed
    with session_scope(sessions) as session:  # foreign keys are on again for the service's own connections
        session.delete(session.scalar(select(User)))
    assert _rows_per_table(engine) == [0, 0, 0]
    engine.dispose()


@pytest.mark.parametrize("second", ["alice", "Alice"])
def test_the_database_refuses_a_second_user_with_the_same_id_in_a_tenant(engine, second):
    """The same id, or one that differs only in case (one folder on a case-insensitive file system)."""
    sessions = session_factory(engine)
    with session_scope(sessions) as session:
        create_key(session, "acme")
        create_key(session, "other")
        tenant_id, other_id = session.scalars(select(Tenant.id).order_by(Tenant.name)).all()
        session.add(User(tenant_id=tenant_id, user_id="alice"))
        session.add(User(tenant_id=other_id, user_id=second))  # another tenant's folder: allowed
    with pytest.raises(IntegrityError), session_scope(sessions) as session:
        session.add(User(tenant_id=tenant_id, user_id=second))


def test_tenant_names_that_differ_only_in_case_are_refused(engine):
    sessions = session_factory(engine)
    with session_scope(sessions) as session:
        create_key(session, "acme")
        create_key(session, "acme")  # a second key of the same tenant
        with pytest.raises(InvalidNameError, match="differs only in case from the existing tenant 'acme'"):
            create_key(session, "ACME")
    with pytest.raises(IntegrityError), session_scope(sessions) as session:
        session.add(Tenant(name="Acme"))


def test_a_schema_newer_than_this_release_is_refused_in_one_line(tmp_path):
    """Review, stop 35: Alembic's "Can't locate revision" traceback, from the server, the worker and kospeech-keys."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'service.db'}")
    migrate(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(SchemaError, match=r"revision 0099, which this kospeech release does not know \(its newest"):
        migrate(engine)
    engine.dispose()
    listed = subprocess.run(
        [sys.executable, "-m", "kospeech.cli.keys", "list", f"server.data_dir={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert listed.returncode != 0 and listed.stderr.strip().splitlines() == [
        "error: server.database_url: the database's schema is at revision 0099, which this kospeech release does not "
        "know (its newest is 0006): a newer release migrated it; run that release (or a newer one) against this database"
    ]


def _database_at(tmp_path, revision):
    """A SQLite database under ``tmp_path`` migrated only up to ``revision`` (one made by an earlier release)."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'service.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        alembic_command.upgrade(config, revision)
        connection.exec_driver_sql("INSERT INTO tenants (name, created_at) VALUES ('acme', CURRENT_TIMESTAMP)")
    return engine


def _documented_user_rename(tenant: str, old_id: str, new_id: str, row_id: str) -> list:
    """The SQL statements docs/service.md gives for renaming a user whose id clashes, placeholders filled in."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text(encoding="utf-8")
    section = docs.split("### Ids that differ only in case", 1)[1]
    block = section.split("```sql\n", 1)[1].split("```", 1)[0]
    filled = block.replace("<tenant>", tenant).replace("<old id>", old_id).replace("<new id>", new_id)
    return [line.rstrip(";") for line in filled.replace("<row id>", row_id).splitlines() if line.startswith("UPDATE")]


@pytest.mark.parametrize("made_at", ["0001", "0003"])
def test_the_upgrade_stops_on_ids_that_differ_only_in_case_and_names_them(tmp_path, made_at):
    """A refused upgrade leaves the database as it was, so the one after the operator's fix runs every step. Review,
    stop 35: SQLite ran the DDL of the steps before the refusal outside the transaction (pysqlite begins one before
    DML only), so 0002's column stayed while the recorded revision went back to 0001: every later start failed on
    "duplicate column name". Review F, stop 40: the message's advice renamed the user's row but not the paths of its
    files (its audio and adapters were then missing); the documented rename is followed here."""
    engine = _database_at(tmp_path, made_at)
    storage = Storage(tmp_path)
    with engine.begin() as connection:  # a database made before ids were compared regardless of case
        for user_pk, user_id in (("1", "alice"), ("2", "Alice"), ("3", "bob")):
            connection.exec_driver_sql(
                "INSERT INTO users (id, tenant_id, user_id, created_at) "
                f"VALUES ('{user_pk}', 1, '{user_id}', CURRENT_TIMESTAMP)"
            )
        audio, adapter = storage.utterance_file("acme", "Alice", "u1"), storage.version_file("acme", "Alice", "j1-1")
        for path in (audio, adapter):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"Alice's")
        connection.exec_driver_sql(
            "INSERT INTO utterances (id, user_pk, text, duration, audio_file, created_at) "
            f"VALUES ('u1', '2', '불 꺼 줘', 1.0, '{storage.relative(audio)}', CURRENT_TIMESTAMP)"
        )
        connection.exec_driver_sql(
            "INSERT INTO adapter_versions (user_pk, version, adapter_type, active, rejected, file, created_at) "
            f"VALUES ('2', 1, 'encoder', 1, 0, '{storage.relative(adapter)}', CURRENT_TIMESTAMP)"
        )
    clash = r"differ only in case.*user acme/Alice \(users.id '2'\), user acme/alice \(users.id '1'\);"
    with pytest.raises(RuntimeError, match=clash + r".*\"Ids that differ only in case\""):
        migrate(engine)
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == made_at
        job_columns = {row[1] for row in connection.exec_driver_sql("PRAGMA table_info(jobs)")}
    assert ("queued_at" in job_columns) == (made_at != "0001")
    with engine.begin() as connection:
        for statement in _documented_user_rename("acme", "Alice", "alice2", "2"):
            connection.exec_driver_sql(statement)
    storage.user_dir("acme", "Alice").rename(storage.user_dir("acme", "alice2"))  # a case-sensitive file system
    migrate(engine)
    with engine.connect() as connection:
        files = connection.exec_driver_sql(
            "SELECT audio_file FROM utterances UNION ALL SELECT file FROM adapter_versions"
        ).scalars()
        assert [storage.absolute(file).read_bytes() for file in files] == [b"Alice's", b"Alice's"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, tenant_id, user_id, created_at) VALUES ('4', 1, 'BOB', CURRENT_TIMESTAMP)"
        )
    engine.dispose()


def test_the_upgrade_to_one_pending_job_per_user_keeps_the_running_job(tmp_path):
    """Review F, stop 40: migration 0003 kept each user's oldest pending job, failing a newer one that a worker was
    training during a rolling upgrade. Now the running job is kept, else the oldest queued one."""
    engine = _database_at(tmp_path, "0002")
    with engine.begin() as connection:
        for user_pk in ("1", "2"):
            connection.exec_driver_sql(
                f"INSERT INTO users (id, tenant_id, user_id, created_at) VALUES ('{user_pk}', 1, 'u{user_pk}', "
                "CURRENT_TIMESTAMP)"
            )
        jobs = [("old", "1", "queued", "01"), ("training", "1", "running", "02"), ("first", "2", "queued", "01")]
        jobs += [("second", "2", "queued", "02")]
        for job_id, user_pk, status, day in jobs:
            connection.exec_driver_sql(
                "INSERT INTO jobs (id, tenant_id, user_pk, adapter_type, status, progress, attempts, created_at) "
                f"VALUES ('{job_id}', 1, '{user_pk}', 'encoder', '{status}', 0, 0, '2026-12-{day} 00:00:00')"
            )
    migrate(engine)
    with engine.connect() as connection:
        states = dict(connection.exec_driver_sql("SELECT id, status FROM jobs").all())
    assert states == {"old": "failed", "training": "running", "first": "queued", "second": "failed"}
    engine.dispose()


def test_user_keys_have_their_own_form_and_a_downgrade_revokes_them(tmp_path):
    """A server older than user keys refuses the ``ksu_`` form (it knows ``ksk_`` only), and a database taken back
    before migration 0005 loses the column that limits a user key: the downgrade revokes them first."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'service.db'}")
    migrate(engine)
    sessions = session_factory(engine)
    with session_scope(sessions) as session:
        user_key = create_key(session, "acme", user_id="alice")
        tenant_key = create_key(session, "acme")
    assert user_key.startswith("ksu_") and tenant_key.startswith("ksk_")
    with session_scope(sessions) as session:
        assert authenticate(session, user_key).user_id == "alice" and authenticate(session, tenant_key).user_id is None
        session.add(User(id="1", tenant_id=1, user_id="Bob"))
    with pytest.raises(InvalidNameError, match=r"user: 'bob' differs only in case from the existing user 'Bob'"):
        with session_scope(sessions) as session:
            create_key(session, "acme", user_id="bob")
    config = Config()  # as Alembic's command line reads an ini file naming the database (docs/service.md)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", str(engine.url))
    alembic_command.downgrade(config, "0004")
    with engine.connect() as connection:
        live = connection.exec_driver_sql("SELECT prefix FROM api_keys WHERE revoked_at IS NULL").scalars().all()
        assert MigrationContext.configure(connection).get_current_revision() == "0004"
    assert live == [tenant_key.split("_")[1]]
    engine.dispose()


def test_settings_are_typed_and_checked(tmp_path):
    settings = load_settings([f"server.data_dir={tmp_path}", "server.port=9000", "server.database_url=null"])
    assert settings.port == 9000 and settings.database() == f"sqlite:///{tmp_path / 'service.db'}"
    for bad in (
        "server.port=abc",
        "server.nope=1",
        "server.port=0",
        "server.queue=kafka",
        "port=1",
        "server.port",
        "server.prepare_threads=0",
        "server.job_heartbeat_seconds=0",
        "server.keep_inactive_versions=0",  # the version just replaced may still be loading for a request
    ):
        with pytest.raises(ConfigError):
            load_settings([bad])
    # review, stop 39: the key of a wrongly typed value was not named
    with pytest.raises(ConfigError, match=r"^bad setting: server.port: Value 'abc' .* could not be converted"):
        load_settings(["server.port=abc"])
    assert "server.train_num_epochs=null " in serve_cli.settings_help()  # the help showed None, which is refused
    assert "server.cors_allow_origins=[] " in serve_cli.settings_help()
    never_sent = ("https://App.Example.com", "https://app.example.com:443", "https://*.example.com")  # review E2
    for origin in ("https://app.example.com/", "app.example.com", "https://app.example.com/enroll", *never_sent):
        with pytest.raises(ConfigError, match="is not an origin as browsers send it"):
            load_settings([f"server.cors_allow_origins=[{origin}]"])  # a browser's Origin never matches these
    with pytest.raises(ConfigError, match=r"^bad setting: 'server.cors_allow_origins=\[\*\]' is not valid YAML"):
        load_settings(["server.cors_allow_origins=[*]"])  # YAML's alias: a yaml ScannerError traceback before
    allowed = ["*", "http://localhost:3000", "https://app.example.com:8443", "http://[::1]:8000", "http://10.0.0.1"]
    assert load_settings([f"server.cors_allow_origins={json.dumps(allowed)}"]).cors_allow_origins == allowed
    with pytest.raises(ConfigError, match=r"server.redis_url must start with one of \['redis://'"):
        load_settings(["server.queue=redis", "server.redis_url=notaurl"])  # review, stop 35: a ValueError traceback
    # a lease shorter than 3 heartbeats would take running jobs from their workers between two heartbeats
    with pytest.raises(ConfigError, match=r"job_lease_seconds \(5\) must be at least 3 x server.job_heartbeat"):
        load_settings(["server.job_lease_seconds=5"])
    quick = load_settings(["server.job_lease_seconds=1", "server.job_heartbeat_seconds=0.25", "server.torch_threads=2"])
    runner = AdapterJobRunner.from_settings(quick)
    assert runner.heartbeat_seconds == 0.25 and runner.torch_threads == 2  # a job runs on the process' own count


@pytest.mark.parametrize(
    "setting, message",
    [
        # review, stop 35: the server started, then refused every training request without a type as the client's 422
        ("server.default_adapter_type=nope", "error: server.default_adapter_type must be one of ['encoder', "),
        # review, stop 35: a ModuleNotFoundError traceback
        ("server.database_url=mysql://root@127.0.0.1/kospeech", "error: server.database_url: no driver for mysql: "),
        # review, stop 39: training always ran on the CPU, serving wherever the recognizer chose
        ("server.device=cuda:99", "error: server.device: device 'cuda:99'"),
        # review F, stop 40: a TypeError traceback (SQLite's in-memory pool takes no pool size)
        ("server.database_url=sqlite://", "error: server.database_url: 'sqlite://' is an in-memory SQLite database"),
    ],
)
def test_a_server_or_worker_with_an_unusable_setting_stops_with_one_line(tmp_path, setting, message):
    for command in (serve_cli.main, worker_cli.main):
        with pytest.raises(SystemExit) as stopped:
            command([f"server.data_dir={tmp_path}", setting])
        assert str(stopped.value).startswith(message) and "\n" not in str(stopped.value), stopped.value


def test_a_sqlite_uri_filename_is_migrated_and_a_failed_migration_is_not_called_a_connection_failure(tmp_path, capsys):
    """Review F, stop 40: the migration lock was made at ``file:/path.db.migrate-lock``, so a URI-filename URL (which
    ``create_db_engine`` accepts) never started; and a migration that failed on a database it had connected to was
    reported as "cannot connect"."""
    database = tmp_path / "u.db"
    sqlite3.connect(database).close()
    uri = f"server.database_url=sqlite:///file:{database}?uri=true"
    assert keys_cli.main(["create", "--tenant", "acme", f"server.data_dir={tmp_path}", uri]) == 0
    assert (tmp_path / "u.db.migrate-lock").is_file() and " ksk_" in capsys.readouterr().out
    taken = tmp_path / "taken.db"
    with sqlite3.connect(taken) as connection:  # tables made without Alembic: the first migration cannot create them
        connection.execute("CREATE TABLE tenants (id TEXT)")
    with pytest.raises(SystemExit) as stopped:
        keys_cli.main(["list", f"server.data_dir={tmp_path}", f"server.database_url=sqlite:///{taken}"])
    assert str(stopped.value).startswith("error: server.database_url: cannot bring the schema up to date in sqlite:")
    assert "table tenants already exists" in str(stopped.value)


def test_the_settings_table_of_the_docs_is_the_schema():
    """docs/service.md lists every setting with its default and help text, as ``ServerConfig`` declares them."""
    table = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `server\.(\w+)` \| `[^`]*` \| (.*) \|$", table, re.MULTILINE))
    defaults = ServerConfig()  # a list's default comes from its factory
    for setting in dataclasses.fields(ServerConfig):
        default = OmegaConf.to_yaml({"value": getattr(defaults, setting.name)}).split(":", 1)[1].strip().strip("'")
        assert f"| `server.{setting.name}` | `{default}` | {setting.metadata['help']} |" in table, setting.name
    assert sorted(rows) == sorted(setting.name for setting in dataclasses.fields(ServerConfig))


def test_a_tenant_another_process_creates_meanwhile_gets_the_new_key(tmp_path, capsys):
    """Review, stop 35: two ``kospeech-keys create --tenant NEW`` at once: the second one's insert of the tenant
    failed on the unique name with a traceback. Here the other process commits the tenant between this one's
    lookup and its insert; the command then uses that row and prints a key that was stored."""
    data = f"server.data_dir={tmp_path}"
    other = create_db_engine(f"sqlite:///{tmp_path / 'service.db'}")
    migrate(other)
    raced = []

    def another_process_creates_it(_connection, _cursor, statement, *_):
        if statement.startswith("INSERT INTO tenants") and not raced:
            raced.append(statement)
            with other.begin() as connection:
                connection.execute(insert(Tenant).values(name="race", created_at=datetime.now(timezone.utc)))

    event.listen(Engine, "before_cursor_execute", another_process_creates_it)
    try:
        assert keys_cli.main(["create", "--tenant", "race", data]) == 0
    finally:
        event.remove(Engine, "before_cursor_execute", another_process_creates_it)
    printed = capsys.readouterr().out.splitlines()
    assert raced and len(printed) == 1 and printed[0].startswith("new key for tenant race")
    with session_scope(session_factory(other)) as session:
        assert authenticate(session, printed[0].split()[-1]).tenant.name == "race"
        assert session.scalar(select(func.count()).select_from(Tenant)) == 1
    other.dispose()


def test_kospeech_keys_creates_lists_and_revokes(tmp_path, capsys):
    data = f"server.data_dir={tmp_path}"
    for command in ("create", "list", "revoke"):  # review, stop 35: a command's help named no way to pick the database
        with pytest.raises(SystemExit) as answered:
            keys_cli.main([command, "--help"])
        assert answered.value.code == 0 and "server.database_url" in capsys.readouterr().out
    assert keys_cli.main(["create", "--tenant", "acme", "--admin", data]) == 0
    key = capsys.readouterr().out.split()[-1]
    assert key.startswith("ksk_")
    assert keys_cli.main(["list", data]) == 0
    listing = capsys.readouterr().out
    prefix = key.split("_")[1]
    assert prefix in listing and "acme" in listing and "admin" in listing and key not in listing
    capsys.readouterr()
    assert keys_cli.main(["revoke", key, data]) == 0  # the whole key pasted by mistake: it is not echoed
    assert keys_cli.main(["revoke", key, data]) == 1
    said = capsys.readouterr()
    assert prefix in said.out and prefix in said.err and key not in said.out + said.err
    secret = key.split("_", 2)[2]
    for pasted in (f" {key}\n", f"Bearer {key}", key[:-1].replace(prefix, prefix[:-1])):  # review, stop 33: echoed
        assert keys_cli.main(["revoke", pasted, data]) == 1
        said = capsys.readouterr()
        assert "no live key" in said.err and secret[:-1] not in said.out + said.err, said.err
    assert keys_cli.main(["create", "--tenant", "../x", data]) == 1
    assert "tenant: invalid tenant name '../x': a tenant name is 1 to 64" in capsys.readouterr().err  # "adapter name"
    assert keys_cli.main(["create", "--tenant", "acme", "--user", "a/b", data]) == 1
    assert "user: invalid user id 'a/b': a user id is 1 to 64" in capsys.readouterr().err
    assert keys_cli.main(["create", "--tenant", "ACME", data]) == 1
    assert "differs only in case from the existing tenant 'acme'" in capsys.readouterr().err
    assert keys_cli.main(["create", "--tenant", "acme", "--user", "alice", data]) == 0
    scoped = capsys.readouterr().out
    assert "key of user alice" in scoped
    assert keys_cli.main(["list", data]) == 0
    assert f"{scoped.split()[-1].split('_')[1]}\tacme\tuser=alice\t" in capsys.readouterr().out
    assert keys_cli.main(["create", "--tenant", "acme", "--user", "../x", data]) == 1
    with pytest.raises(SystemExit):  # argparse: --admin and --user exclude each other
        keys_cli.main(["create", "--tenant", "acme", "--admin", "--user", "alice", data])
    capsys.readouterr()
    engine = create_db_engine(settings_for(tmp_path).database())
    with session_scope(session_factory(engine)) as session:
        assert authenticate(session, key) is None
    engine.dispose()


def test_processes_starting_together_on_a_new_database_migrate_one_at_a_time(request, tmp_path):
    for backend in ("sqlite", "postgresql"):
        url = f"sqlite:///{tmp_path / 'new.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
        engines = [create_db_engine(url) for _ in range(4)]
        try:
            with ThreadPoolExecutor(len(engines)) as pool:  # each its own connection, as separate processes would
                list(pool.map(migrate, engines))
            with engines[0].connect() as connection:
                assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        finally:
            if backend == "postgresql":
                Base.metadata.drop_all(engines[0])
                with engines[0].begin() as connection:
                    connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
            for engine in engines:
                engine.dispose()


def test_a_deleted_users_path_is_free_at_once_and_late_writers_leave_nothing(tmp_path):
    storage = Storage(tmp_path)
    audio = storage.utterance_file("acme", "alice", "u1")
    audio.parent.mkdir(parents=True)
    audio.write_bytes(b"RIFF")
    two_hours_ago = time.time() - 7200
    os.utime(storage.user_dir("acme", "alice"), (two_hours_ago, two_hours_ago))  # a user idle for two hours
    with storage.deleting_user("acme", "alice"):
        assert not storage.user_dir("acme", "alice").exists()  # moved into trash/ at the start
        Storage(tmp_path)  # another process starting meanwhile: a deletion in progress is not its to sweep
        assert len(list(storage.trash_dir.iterdir())) == 1
    assert not storage.user_dir("acme", "alice").exists() and not any(storage.trash_dir.iterdir())
    with storage.deleting_user("acme", "alice"):  # already gone: nothing to do
        pass
    late = storage.job_dir("acme", "alice", "job-1") / "run"
    late.mkdir(parents=True)  # a run that had not noticed the deletion yet
    storage.prune_empty_folders(late)
    assert not (storage.tenants_dir / "acme" / "users" / "alice").exists()
    assert (storage.tenants_dir / "acme" / "users").is_dir()  # the tenant's folder stays
    kept = storage.utterance_file("acme", "alice", "u2")  # the same id created again meanwhile: its files stay
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"RIFF")
    storage.job_dir("acme", "alice", "job-1").mkdir(parents=True)
    storage.prune_empty_folders(storage.job_dir("acme", "alice", "job-1"))
    assert kept.is_file() and not (storage.user_dir("acme", "alice") / "jobs").exists()
    leftover, in_progress = storage.trash_dir / "acme.bob.0123", storage.trash_dir / "acme.cy.4567"
    (leftover / "versions").mkdir(parents=True)
    (in_progress / "versions").mkdir(parents=True)
    eleven_minutes_ago = time.time() - 660
    os.utime(leftover, (eleven_minutes_ago, eleven_minutes_ago))
    Storage(tmp_path)  # a start sweeps what a deletion could not remove
    assert not leftover.exists()
    # review, stop 34: a start also swept a deletion in progress in another process, which could not put it back
    assert in_progress.is_dir()


def test_abandoned_uploads_are_swept_and_fresh_ones_kept(tmp_path):
    storage = Storage(tmp_path)
    abandoned, fresh = storage.uploads_dir / "upload-old.audio", storage.uploads_dir / "upload-new.audio"
    abandoned.write_bytes(b"RIFF")
    fresh.write_bytes(b"RIFF")
    two_hours_ago = time.time() - 7200
    os.utime(abandoned, (two_hours_ago, two_hours_ago))  # a killed server's upload
    assert storage.sweep_uploads() == 1
    assert not abandoned.exists() and fresh.is_file()  # a running request's upload is left alone
    with time_machine.travel(time.time() + 7200):  # this machine's clock two hours ahead of the shared folder's
        assert storage.sweep_uploads() == 0 and fresh.is_file()
    assert storage.sweep_uploads(older_than_seconds=-1) == 1 and not fresh.exists()


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_server_or_worker_without_a_usable_base_model_stops_at_once(tmp_path, command):
    """Not at its first request or job: one line naming the setting, status 1."""
    executable = Path(sys.executable).parent / f"kospeech-{command}"
    missing = tmp_path / "missing.pt"
    result = subprocess.run(
        [str(executable), f"server.data_dir={tmp_path}", f"server.base_model_path={missing}", "server.port=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: server.base_model_path: checkpoint not found: {missing}"


def test_an_unreachable_database_ends_a_command_in_one_line_without_its_password(tmp_path):
    url = "postgresql+psycopg://kospeech:hunter2@127.0.0.1:1/asr"  # nothing listens on port 1
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "kospeech-keys"),
            "list",
            f"server.data_dir={tmp_path}",
            f"server.database_url={url}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr and "hunter2" not in result.stderr
    assert result.stderr.strip().startswith(
        "error: server.database_url: cannot connect to postgresql+psycopg://kospeech:***@"
    )


def _refused_write(connection, statement):
    try:
        connection.exec_driver_sql(statement)
    except OperationalError as exc:  # SQLAlchemy's wrapper, the driver's error as its orig
        return exc
    except Exception as exc:  # noqa: BLE001 - the driver's own class differs per database
        return exc
    raise AssertionError(f"{statement} was not refused")


def test_storage_faults_are_told_from_other_errors_through_their_causes(tmp_path, fresh_postgres_url):
    """The data folder's and the database's refusals, as the real drivers raise them (review, stop 34: those of the
    database answered 500 and spent the job's attempts)."""
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as exc:
            raise RuntimeError("writing the adapter failed") from exc
    except RuntimeError as chained:
        assert storage_fault(chained) == "read_only"
    assert storage_fault(OSError(errno.ENOSPC, "No space left on device")) == "full"
    full = create_db_engine(f"sqlite:///{tmp_path / 'full.db'}")
    with full.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (a TEXT)")
        connection.exec_driver_sql("PRAGMA max_page_count = 3")  # as a disk with no room left
        assert storage_fault(_refused_write(connection, "INSERT INTO t VALUES (printf('%.100000c', 'x'))")) == "full"
    full.dispose()
    read_only = create_db_engine(f"sqlite:///file:{tmp_path / 'full.db'}?mode=ro&uri=true")
    assert not Path("file:").exists()  # stop 37: a folder "file:/tmp/..." was made in the working folder
    with read_only.connect() as connection:
        assert storage_fault(_refused_write(connection, "INSERT INTO t VALUES ('x')")) == "read_only"
    read_only.dispose()
    standby = create_db_engine(fresh_postgres_url)
    with standby.connect() as connection:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        assert storage_fault(_refused_write(connection, "CREATE TABLE t (a TEXT)")) == "read_only"
    standby.dispose()
    assert storage_fault(OSError(errno.EACCES, "Permission denied")) is None and storage_fault(ValueError("x")) is None
    assert storage_fault(sqlite3.OperationalError("database or disk is full")) is None  # a message alone is not enough
