"""SQLite through Python's sqlite3: WAL journal, synchronous=FULL (an fsync of the WAL per commit,
durable like the others) or NORMAL, the same two tables and indexes, one writer (as SQLite
allows), batched INSERTs per transaction. It runs inside this process: there is no server, so
its figures carry no client/server round trip."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Optional

from . import runner
from .common import log
from .dataset import Event, batches

NAME = "SQLite"

# payload is TEXT checked with json_valid(): SQLite then parses every payload on insert, as
# PostgreSQL's jsonb and Banyan do.
SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY, type TEXT, ts INTEGER, stream TEXT, message TEXT,
                     payload TEXT CHECK (json_valid(payload)));
CREATE TABLE edges (child INTEGER, parent INTEGER);
CREATE INDEX edges_child ON edges (child);
CREATE INDEX edges_parent ON edges (parent);
"""


def version() -> str:
    return sqlite3.sqlite_version


def open_db(path: str, synchronous: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)  # autocommit: transactions are explicit
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    return con


def encode(events: list[Event], size: int) -> list[tuple[list[tuple], list[tuple]]]:
    """Rows per batch, built before the clock starts: (event rows, edge rows)."""
    return [([(e.id, e.type, e.ts, e.stream, e.message, e.payload) for e in part],
             [(e.id, p) for e in part for p in e.parents]) for part in batches(events, size)]


def ingest(root: str, label: str, work: list[tuple[list[tuple], list[tuple]]], synchronous: str,
           seconds_max: float, path: Optional[str] = None) -> runner.RunResult:
    """One measured run into a fresh database file, each batch one BEGIN ... COMMIT. The file
    is deleted afterwards unless `path` names it (the query phase keeps its database)."""
    keep = path is not None
    path = path or os.path.join(root, f"sqlite-{label.replace(' ', '_')}.db")
    con = open_db(path, synchronous)
    con.executescript(SCHEMA)
    total = sum(len(ev) for ev, _ in work)
    done, t0 = 0, time.monotonic()
    cpu0 = time.process_time()
    deadline, last_print = t0 + seconds_max, t0
    for ev_rows, edge_rows in work:
        now = time.monotonic()
        if now > deadline:
            break
        if now - last_print >= 5:
            log(f"sqlite {label}: {now - t0:5.1f} s, {done:,}/{total:,} events, {done / (now - t0):,.0f}/s")
            last_print = now
        con.execute("BEGIN")
        con.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", ev_rows)
        con.executemany("INSERT INTO edges VALUES (?,?)", edge_rows)
        con.execute("COMMIT")
        done += len(ev_rows)
    seconds = time.monotonic() - t0
    cores = (time.process_time() - cpu0) / seconds
    (n,) = con.execute("SELECT count(*) FROM events").fetchone()
    con.close()
    if not keep:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    if n != done:
        raise RuntimeError(f"sqlite {label}: {n:,} rows, {done:,} committed")
    log(f"sqlite {label}: {n:,} events stored")
    # In process: the client and the "server" are the same process, counted once as server.
    return runner.RunResult(done, seconds, 0.0, cores, done == total)


class QueryClient:
    def __init__(self, path: str, seconds_max: float):
        self.con = sqlite3.connect(path, isolation_level=None)
        self.seconds_max = seconds_max
        self.deadline = float("inf")
        # Abort a statement past the time bound (checked every 100,000 VM steps).
        self.con.set_progress_handler(lambda: 1 if time.monotonic() > self.deadline else 0, 100_000)
        self.con.execute("PRAGMA temp_store=MEMORY")
        self.con.execute("CREATE TEMP TABLE seen (id INTEGER PRIMARY KEY, d INTEGER)")
        self.con.execute("CREATE INDEX temp.seen_d ON seen (d)")

    def _start(self) -> None:
        self.deadline = time.monotonic() + self.seconds_max

    def _one(self, sql: str, args: tuple) -> int:
        self._start()
        try:
            return self.con.execute(sql, args).fetchone()[0]
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise TimeoutError(str(e)) from None
            raise

    # UNION (not UNION ALL) keeps a set of every row produced: each event once.
    def ancestors(self, x: int) -> int:
        return self._one("WITH RECURSIVE a(id) AS (SELECT parent FROM edges WHERE child = ? "
                         "UNION SELECT e.parent FROM edges e JOIN a ON e.child = a.id) SELECT count(*) FROM a", (x,))

    def descendants(self, x: int) -> int:
        return self._one("WITH RECURSIVE d(id) AS (SELECT child FROM edges WHERE parent = ? "
                         "UNION SELECT e.child FROM edges e JOIN d ON e.parent = d.id) SELECT count(*) FROM d", (x,))

    def path_hops(self, a: int, b: int) -> Optional[int]:
        """The same level-synchronous BFS as PostgreSQL's bfs_hops (a recursive CTE cannot keep
        a visited set across depths): one INSERT OR IGNORE per level into a temp table, walking
        up from b inside [a, b], driven from here as an application embedding SQLite would."""
        if a == b:
            return 0
        self._start()
        try:
            self.con.execute("DELETE FROM seen")
            self.con.execute("INSERT INTO seen VALUES (?, 0)", (b,))
            for depth in range(1, b - a + 1):
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"path({a}, {b}) past {self.seconds_max:.0f} s")
                cur = self.con.execute("INSERT OR IGNORE INTO seen SELECT e.parent, ? FROM seen s "
                                       "JOIN edges e ON e.child = s.id WHERE s.d = ? AND e.parent >= ?",
                                       (depth, depth - 1, a))
                if cur.rowcount == 0:
                    return None
                if self.con.execute("SELECT 1 FROM seen WHERE id = ?", (a,)).fetchone():
                    return depth
            return None
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise TimeoutError(str(e)) from None
            raise

    def close(self) -> None:
        self.con.close()
