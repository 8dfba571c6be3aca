"""The studio's database: SQLAlchemy Core tables, the schema version and its migrations, and transactions that
behave the same on SQLite (the embedded default) and PostgreSQL (a team's server).

SQLite runs in WAL mode with foreign keys on and a busy timeout, and every write transaction starts with
`BEGIN IMMEDIATE`, so the web process and the worker processes queue for the write lock instead of failing with
"database is locked" when a read turns into a write. PostgreSQL needs nothing special: workers claim jobs with
`FOR UPDATE SKIP LOCKED` (see `queue.py`).

Times are Unix seconds (floats) written by the process that acts: no time-zone handling differs between backends.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional, Union

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

__all__ = ['SCHEMA_VERSION', 'Store', 'SchemaError', 'metadata', 'settings', 'projects', 'tags', 'images',
           'image_tags', 'jobs', 'snapshot_images', 'iterations', 'publications', 'predictions', 'ACTIVE_JOB_STATES']

metadata = sa.MetaData()
_cascade = {'ondelete': 'CASCADE'}

settings = sa.Table(
    'settings', metadata,
    sa.Column('key', sa.String(64), primary_key=True),
    sa.Column('value', sa.Text, nullable=False))

projects = sa.Table(
    'projects', metadata,
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('name', sa.String(200), nullable=False, unique=True),
    sa.Column('description', sa.Text, nullable=False, default=''),
    sa.Column('multi_label', sa.Boolean, nullable=False, default=False),
    sa.Column('backbone', sa.String(100), nullable=False),
    sa.Column('size', sa.Integer, nullable=False),
    sa.Column('store_predictions', sa.Boolean, nullable=False, default=True),
    sa.Column('created_at', sa.Float, nullable=False))

tags = sa.Table(
    'tags', metadata,
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('project_id', sa.Integer, sa.ForeignKey('projects.id', **_cascade), nullable=False),
    sa.Column('name', sa.String(200), nullable=False),
    sa.Column('created_at', sa.Float, nullable=False),
    sa.UniqueConstraint('project_id', 'name', name='uq_tag_name'))

images = sa.Table(
    'images', metadata,
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('project_id', sa.Integer, sa.ForeignKey('projects.id', **_cascade), nullable=False),
    sa.Column('sha256', sa.String(64), nullable=False, index=True),
    sa.Column('width', sa.Integer, nullable=False),
    sa.Column('height', sa.Integer, nullable=False),
    sa.Column('source', sa.String(20), nullable=False),          # upload, import, prediction
    sa.Column('original_name', sa.String(500), nullable=False),  # shown to people, never used as a path
    sa.Column('dhash', sa.BigInteger, nullable=True),            # find_duplicates' 64-bit dHash, as signed int64
    sa.Column('thumb', sa.LargeBinary, nullable=True),           # its 12x12x3 colour thumbnail
    sa.Column('created_at', sa.Float, nullable=False),
    sa.UniqueConstraint('project_id', 'sha256', name='uq_image_bytes'))

image_tags = sa.Table(
    'image_tags', metadata,
    sa.Column('image_id', sa.Integer, sa.ForeignKey('images.id', **_cascade), primary_key=True),
    sa.Column('tag_id', sa.Integer, sa.ForeignKey('tags.id', **_cascade), primary_key=True, index=True))

#: Job states in which a project counts as training (at most one such job per project: a partial unique index).
ACTIVE_JOB_STATES = ('queued', 'running')

jobs = sa.Table(
    'jobs', metadata,
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('project_id', sa.Integer, sa.ForeignKey('projects.id', **_cascade), nullable=False),
    sa.Column('mode', sa.String(20), nullable=False),            # quick, advanced
    sa.Column('budget_minutes', sa.Float, nullable=True),
    sa.Column('options', sa.JSON, nullable=False),               # epochs, bs, seed, ...
    sa.Column('status', sa.String(20), nullable=False),          # queued running succeeded failed cancelled
    sa.Column('cancel_requested', sa.Boolean, nullable=False, default=False),
    sa.Column('worker', sa.String(200), nullable=True),          # host:pid of the worker that claimed it
    sa.Column('created_at', sa.Float, nullable=False),
    sa.Column('started_at', sa.Float, nullable=True),
    sa.Column('heartbeat_at', sa.Float, nullable=True),
    sa.Column('finished_at', sa.Float, nullable=True),
    sa.Column('progress', sa.JSON, nullable=True),               # phase, epoch, n_epochs, losses, accuracy, eta_s
    sa.Column('error', sa.Text, nullable=True),
    sa.Column('iteration_id', sa.Integer, nullable=True),
    sa.Index('one_active_job_per_project', 'project_id', unique=True,
             sqlite_where=sa.text("status IN ('queued', 'running')"),
             postgresql_where=sa.text("status IN ('queued', 'running')")),
    sa.Index('jobs_by_status', 'status', 'id'))

snapshot_images = sa.Table(          # what a job trains on, fixed when it is queued (later uploads do not change it)
    'snapshot_images', metadata,
    sa.Column('job_id', sa.Integer, sa.ForeignKey('jobs.id', **_cascade), primary_key=True),
    sa.Column('position', sa.Integer, primary_key=True),
    sa.Column('image_id', sa.Integer, nullable=True, index=True),   # the image may be deleted later: no FK
    sa.Column('sha256', sa.String(64), nullable=False, index=True),
    sa.Column('labels', sa.JSON, nullable=False),                   # tag names
    sa.Column('split', sa.String(10), nullable=False),              # train, valid
    sa.Column('probs', sa.JSON, nullable=True))                     # validation probabilities of the iteration

iterations = sa.Table(
    'iterations', metadata,
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('project_id', sa.Integer, sa.ForeignKey('projects.id', **_cascade), nullable=False),
    sa.Column('job_id', sa.Integer, sa.ForeignKey('jobs.id'), nullable=False, unique=True),
    sa.Column('number', sa.Integer, nullable=False),
    sa.Column('created_at', sa.Float, nullable=False),
    sa.Column('mode', sa.String(20), nullable=False),
    sa.Column('backbone', sa.String(100), nullable=False),
    sa.Column('size', sa.Integer, nullable=False),
    sa.Column('classes', sa.JSON, nullable=False),
    sa.Column('multi_label', sa.Boolean, nullable=False),
    sa.Column('export_file', sa.String(200), nullable=False),      # relative to the studio's exports/ folder
    sa.Column('n_train', sa.Integer, nullable=False),
    sa.Column('n_valid', sa.Integer, nullable=False),
    sa.Column('report', sa.JSON, nullable=False),                  # validation_report at the default threshold
    sa.Column('curve', sa.JSON, nullable=False),                   # threshold_curve: counts at 101 thresholds
    sa.Column('history', sa.JSON, nullable=False),                 # per phase: epochs, losses, accuracy, seconds
    sa.UniqueConstraint('project_id', 'number', name='uq_iteration_number'))

publications = sa.Table(
    'publications', metadata,
    sa.Column('project_id', sa.Integer, sa.ForeignKey('projects.id', **_cascade), primary_key=True),
    sa.Column('iteration_id', sa.Integer, sa.ForeignKey('iterations.id', **_cascade), nullable=False),
    sa.Column('name', sa.String(200), nullable=False),
    sa.Column('published_at', sa.Float, nullable=False))

predictions = sa.Table(
    'predictions', metadata,
    sa.Column('id', sa.Integer, primary_key=True),
    sa.Column('project_id', sa.Integer, sa.ForeignKey('projects.id', **_cascade), nullable=False),
    sa.Column('iteration_id', sa.Integer, sa.ForeignKey('iterations.id', ondelete='SET NULL'), nullable=True),
    sa.Column('image_id', sa.Integer, sa.ForeignKey('images.id', **_cascade), nullable=False),
    sa.Column('created_at', sa.Float, nullable=False),
    sa.Column('probs', sa.JSON, nullable=False),                   # {tag: probability}
    sa.Column('top_tag', sa.String(200), nullable=False),
    sa.Column('top_probability', sa.Float, nullable=False),
    sa.Column('uncertainty', sa.Float, nullable=False),            # 1 - margin: the listing's order
    sa.Index('predictions_by_uncertainty', 'project_id', 'uncertainty'))


# An id is never given twice, on SQLite as on PostgreSQL (whose sequences never go back): SQLite otherwise hands a
# deleted row's id (the highest) to the next row, and a client still holding it (a script's project id, a cached model
# keyed by iteration) would act on someone else's row.
for _table in (projects, tags, images, jobs, iterations, predictions):
    _table.dialect_options['sqlite']['autoincrement'] = True


# ------------------------------------------------------------------------------------------------- migrations
def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn)


#: (version, what it does, function): applied in order to bring a database to SCHEMA_VERSION. A later release
#: appends (2, 'why', function) here and never edits an entry a released studio has applied.
MIGRATIONS = [(1, 'projects, tags, images, jobs, snapshots, iterations, publications, predictions', _create_v1)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


class SchemaError(RuntimeError):
    """The database's schema is newer than this studio knows, or is not a studio database."""


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, 'connect')
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy's 'begin' event below emits BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in ('journal_mode=WAL', 'foreign_keys=ON', 'busy_timeout=60000', 'synchronous=FULL'):
            cursor.execute(f'PRAGMA {pragma}')
        cursor.close()

    @event.listens_for(engine, 'begin')
    def _on_begin(conn):
        # writers take the write lock at once: two processes never both read, then fail to upgrade to a write
        conn.exec_driver_sql('BEGIN IMMEDIATE' if conn.get_execution_options().get('write') else 'BEGIN')


def database_url(db: Optional[str], folder: Union[str, Path]) -> str:
    """The SQLAlchemy URL: `db` as given (postgresql://... is read with psycopg 3), else DIR/studio.db (SQLite)."""
    if not db:
        return f'sqlite:///{Path(folder).absolute() / "studio.db"}'
    if db.startswith('postgresql://') or db.startswith('postgres://'):
        return 'postgresql+psycopg://' + db.split('://', 1)[1]
    return db


class Store:
    """The studio's database: an engine, read and write transactions, and the migrations.

    Args:
        url: a SQLAlchemy URL (`sqlite:///path/studio.db`, `postgresql+psycopg://user@host/db`; see `database_url`).

    Example:
        >>> store = Store(database_url(None, 'studio')); store.migrate()
        >>> with store.write() as conn: conn.execute(sa.insert(tags).values(...))
    """

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith('sqlite')
        if self.is_sqlite:
            self.engine = sa.create_engine(url, connect_args={'timeout': 60, 'check_same_thread': False})
            _sqlite_setup(self.engine)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot on PostgreSQL and in SQLite's WAL)."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on an exception."""
        with self.engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                yield conn

    def schema_version(self, conn: Connection) -> int:
        """The version the database is at (0: empty)."""
        if not sa.inspect(conn).has_table('settings'):
            if sa.inspect(conn).get_table_names():
                raise SchemaError(f'{self.safe_url} holds tables but no studio settings: it is not a studio database; '
                                  'give the studio an empty database (or a new --dir)')
            return 0
        value = conn.execute(sa.select(settings.c.value).where(settings.c.key == 'schema_version')).scalar()
        return int(value or 0)

    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION (one transaction, serialized between processes); returns the version
        the database was at."""
        with self.write() as conn:
            if not self.is_sqlite:  # serialize concurrent starts: a transaction-scoped advisory lock
                conn.execute(sa.text('SELECT pg_advisory_xact_lock(7412093)'))
            found = self.schema_version(conn)
            if found > SCHEMA_VERSION:
                raise SchemaError(f'the database {self.safe_url} is at schema version {found}, newer than this '
                                  f'learner knows ({SCHEMA_VERSION}): upgrade learner (pip install -U learner)')
            for version, _what, apply in MIGRATIONS:
                if version > found:
                    apply(conn)
                    set_setting(conn, 'schema_version', str(version))
            return found

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()


def get_setting(conn: Connection, key: str) -> Optional[str]:
    return conn.execute(sa.select(settings.c.value).where(settings.c.key == key)).scalar()


def set_setting(conn: Connection, key: str, value: str) -> None:
    if get_setting(conn, key) is None:
        conn.execute(sa.insert(settings).values(key=key, value=value))
    else:
        conn.execute(sa.update(settings).where(settings.c.key == key).values(value=value))
