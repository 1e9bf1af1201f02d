"""Opening the store: one engine per process, sessions that commit before a request is answered.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is on disk when it returns, so a 2xx
survives a kill or a power cut) and takes its write lock at ``BEGIN IMMEDIATE``: concurrent
writers then queue on the busy timeout instead of failing with "database is locked" when a read
transaction tries to upgrade. PostgreSQL needs nothing special (``postgresql+psycopg://``).
"""

from __future__ import annotations

from collections.abc import Iterator
import threading
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_S = 30.0


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or used (answered 503 with this message)."""


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       f"busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("leti_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their directory created and the pragmas above."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": SQLITE_BUSY_TIMEOUT_S})
        _sqlite_events(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Store:
    """The database handle the app builds once: sessions for reading and for writing."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(leti_write=True),
                                   expire_on_commit=False)
        # SQLite has one writer at a time; queueing writers on a lock here, instead of on
        # SQLite's sleep-and-retry busy handler, keeps the latency tail short under load.
        self._write_lock: AbstractContextManager[object] = \
            threading.Lock() if self.dialect == "sqlite" else nullcontext()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        from service.store.migrate import upgrade

        upgrade(self.engine)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work is committed (durably) when the block ends, rolled back on error."""
        with self._write_lock, self._write.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers a query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"store unreachable: {type(exc).__name__}") from exc

    def close(self) -> None:
        self.engine.dispose()
