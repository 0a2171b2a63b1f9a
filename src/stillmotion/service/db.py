"""SQLite connections shared by the embedded job store and the key store (one file per data directory).

WAL lets the API read while a worker writes (https://www.sqlite.org/wal.html); ``busy_timeout`` makes a
writer wait for another process's write instead of failing. Connections are per thread, because a
sqlite3 connection must not be shared across threads, nor inherited across ``fork``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: autocommit, so each statement is its own transaction unless we BEGIN one.
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=True)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable against process crashes in WAL mode (only an OS crash may lose the last commit).
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class Database:
    """A lazily opened connection per thread to one SQLite file, never shared with a forked child."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        # A forked child gets a copy of the parent's thread-locals: drop them there, so the child opens
        # its own connection. (A hook rather than a getpid() per query: syscalls are costly in VMs.)
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._local = threading.local()

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: take the write lock up front, so that read-then-write is atomic across
        processes."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def migrate(self, schema: str) -> None:
        """Create what is missing (every statement of ``schema`` is ``IF NOT EXISTS``)."""
        self.conn.executescript(schema)
