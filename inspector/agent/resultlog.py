"""The durable result log: every result, appended before it is published, in SQLite (WAL mode).

PUB drops messages for late or restarted subscribers; this log is how they recover. The
publisher thread is its only writer; the recovery endpoint reads it through its own connection
(WAL lets readers and the writer run concurrently). Sequence numbers continue across agent
restarts on the same file; `log_id` (a random id made when the file is created) tells subscribers
a new log from the old one. The oldest rows beyond `retain` are pruned.

Tables: meta(key, value); results(seq INTEGER PRIMARY KEY, ts, frame_id, verdict, payload JSON);
events(id, ts, payload JSON).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path

from ..errors import ConfigError

LOG_SCHEMA = "inspector.log/1"
PRUNE_EVERY = 1000

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY, ts REAL NOT NULL, frame_id TEXT NOT NULL, verdict TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, payload TEXT NOT NULL);
"""


def _connect(path: Path, sync: str, readonly: bool = False) -> sqlite3.Connection:
    try:
        if readonly:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        else:
            con = sqlite3.connect(str(path), timeout=10, isolation_level=None, check_same_thread=False)
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0] if not readonly else "wal"
        if mode.lower() != "wal":
            raise ConfigError(f"log_db: {path}: SQLite could not switch it to WAL mode (got {mode}); use a local disk")
        con.execute(f"PRAGMA synchronous={sync.upper()}")
        return con
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"log_db: {path}: not a usable result log ({exc})") from None


class ResultLog:
    """The writer (publisher thread). Thread-compatible, not thread-safe: one thread uses it."""

    def __init__(self, path: str | Path, sync: str = "normal", retain: int = 1_000_000):
        self.path = Path(path)
        self.retain = retain
        if self.path.is_dir():
            raise ConfigError(f"log_db: {self.path} is a folder; give a file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"log_db: cannot create {self.path.parent} ({exc.strerror or exc})") from None
        self.con = _connect(self.path, sync)
        try:
            self.con.executescript(_DDL)
            meta = dict(self.con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"log_db: {self.path}: not a usable result log ({exc})") from None
        if not meta:
            meta = {"schema": LOG_SCHEMA, "log_id": uuid.uuid4().hex[:16]}
            self.con.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
        if meta.get("schema") != LOG_SCHEMA:
            raise ConfigError(f"log_db: {self.path}: log schema {meta.get('schema')!r} is not {LOG_SCHEMA!r}; use a new file")
        self.log_id = meta["log_id"]
        self.last_seq = self.con.execute("SELECT COALESCE(MAX(seq), 0) FROM results").fetchone()[0]
        self._since_prune = 0

    def append(self, rows: list[tuple[int, float, str, str, str]]) -> None:
        """rows of (seq, ts, frame_id, verdict, payload JSON), in one transaction."""
        if not rows:
            return
        with self.con:
            self.con.execute("BEGIN")
            self.con.executemany("INSERT INTO results (seq, ts, frame_id, verdict, payload) VALUES (?, ?, ?, ?, ?)", rows)
        self.last_seq = rows[-1][0]
        self._since_prune += len(rows)
        if self._since_prune >= PRUNE_EVERY:
            self._since_prune = 0
            self.con.execute("DELETE FROM results WHERE seq <= ?", (self.last_seq - self.retain,))

    def append_event(self, ts: float, payload: str) -> None:
        self.con.execute("INSERT INTO events (ts, payload) VALUES (?, ?)", (ts, payload))

    def close(self) -> None:
        try:
            self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            pass
        self.con.close()


class LogReader:
    """A read connection (the recovery endpoint's thread, or any other process)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.con = _connect(self.path, "normal", readonly=True)
        self._lock = threading.Lock()
        self.log_id = self.con.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()[0]

    def since(self, seq: int, limit: int) -> list[tuple[int, str]]:
        """(seq, payload JSON) of the results with sequence > seq, oldest first, at most `limit`."""
        with self._lock:
            return self.con.execute("SELECT seq, payload FROM results WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)).fetchall()

    def bounds(self) -> tuple[int, int, int]:
        """(first seq, last seq, count) of what the log holds now; (0, 0, 0) when empty."""
        with self._lock:
            first, last, count = self.con.execute("SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0), COUNT(*) FROM results").fetchone()
        return first, last, count

    def events(self, limit: int = 20) -> list[str]:
        with self._lock:
            rows = self.con.execute("SELECT payload FROM events ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [r[0] for r in reversed(rows)]

    def close(self) -> None:
        self.con.close()
