"""PostgreSQL: a throw-away cluster (initdb as the postgres user, default settings: fsync on,
synchronous_commit on), tables events and edges with their indexes, COPY or multi-row INSERT
over the v3 protocol, recursive CTEs and a plpgsql BFS for the queries."""

from __future__ import annotations

import glob
import os
import pwd
import signal
import subprocess
from typing import Optional, Sequence

from . import runner
from .common import Processes, free_port, log, wait_until
from .dataset import Event, batches
from .wire import PG_COPY_DONE, PGConn, PGError, WireError, pg_copy_data, pg_query

NAME = "PostgreSQL"

SCHEMA = """
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS edges;
CREATE TABLE events (id bigint PRIMARY KEY, type text, ts bigint, stream text, message text, payload jsonb);
CREATE TABLE edges (child bigint, parent bigint);
CREATE INDEX edges_child ON edges (child);
CREATE INDEX edges_parent ON edges (parent);
"""

# Shortest path as a level-synchronous BFS: a recursive CTE cannot keep "visited" across
# depths (UNION dedupes whole rows, so carrying the depth lets every path through), so each
# level is one set-based INSERT ... ON CONFLICT DO NOTHING into a temp table of visited ids.
# It walks up from dst through parents, inside [src, dst] (ids are a topological order, so no
# path leaves that range), and stops at the level that reaches src, like Banyan's path().
BFS_FUNCTION = """
CREATE OR REPLACE FUNCTION bfs_hops(src bigint, dst bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  frontier bigint[] := ARRAY[dst];
  depth integer := 0;
BEGIN
  IF src = dst THEN RETURN 0; END IF;
  TRUNCATE bfs_seen;
  INSERT INTO bfs_seen VALUES (dst);
  WHILE cardinality(frontier) > 0 LOOP
    depth := depth + 1;
    WITH fresh AS (
      INSERT INTO bfs_seen
      SELECT DISTINCT e.parent FROM edges e WHERE e.child = ANY (frontier) AND e.parent >= src
      ON CONFLICT DO NOTHING
      RETURNING id)
    SELECT coalesce(array_agg(id), '{}') INTO frontier FROM fresh;
    IF src = ANY (frontier) THEN RETURN depth; END IF;
  END LOOP;
  RETURN NULL;
END $$;
"""


def bin_dir() -> Optional[str]:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[4]) if d.split("/")[4].isdigit() else 0)
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, "postgres"))]
    return dirs[-1] if dirs else None


def version(bindir: str) -> str:
    out = subprocess.run([os.path.join(bindir, "postgres"), "--version"], capture_output=True, text=True).stdout
    return out.strip().split(") ", 1)[-1]  # "postgres (PostgreSQL) 15.18 (Debian ...)"


class Server:
    """One cluster for the whole run, started only while PostgreSQL is measured (so its
    background work never overlaps another system's figures); tables are dropped and
    re-created per measurement. PostgreSQL refuses to run as root: the data directory belongs
    to the postgres user and initdb/postgres run as that user (Popen user=, so the handle is
    the postmaster itself)."""

    def __init__(self, procs: Processes, bindir: str, root: str, name: str = "postgres",
                 settings: Sequence[str] = (), initdb: bool = True):
        """`name`: the directory (and log) under `root`; `settings`: extra `-c name=value`
        server settings; initdb=False leaves the data directory to be filled otherwise
        (standby())."""
        self.procs, self.bindir, self.root, self.name, self.settings = procs, bindir, root, name, tuple(settings)
        pw = pwd.getpwnam("postgres")
        self.home = os.path.join(root, name)
        self.data = os.path.join(self.home, "data")
        os.makedirs(self.home)
        os.chown(self.home, pw.pw_uid, pw.pw_gid)
        self.as_pg = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd=self.home,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": self.home})
        if initdb:
            subprocess.run([os.path.join(bindir, "initdb"), "-D", self.data, "-U", "postgres", "--auth=trust",
                            "-E", "UTF8", "--locale=C", "--no-sync"], check=True, capture_output=True, **self.as_pg)
        self.port = free_port()
        self.proc = None

    def start(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": backends are ended and the postmaster exits.
        settings = [x for s in self.settings for x in ("-c", s)]
        self.proc = self.procs.start(NAME, [os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
                                            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.home}",
                                            *settings],
                                     os.path.join(self.root, f"{self.name}.log"), stop_signal=signal.SIGINT, **self.as_pg)
        wait_until(self._ready, 60, "postgres", self.proc)

    def _ready(self) -> bool:
        try:
            PGConn(self.port, timeout=5).close()
            return True
        except PGError:
            return False  # "the database system is starting up"
        except WireError:
            return False

    def connect(self, timeout: float = 300) -> PGConn:
        return PGConn(self.port, timeout=timeout)

    def sql(self, text: str) -> list:
        c = self.connect()
        try:
            return c.query(text)
        finally:
            c.close()

    def reset(self) -> None:
        """Empty tables with their indexes (built before loading, so ingest pays for them as
        Banyan pays for its own), and a checkpoint so the previous run's dirty pages are not
        written during this one."""
        self.sql(SCHEMA)
        self.sql("CHECKPOINT")

    def counts(self) -> tuple[int, int]:
        (row,) = self.sql("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM edges)")
        return int(row[0]), int(row[1])

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None


def standby(primary: Server, name: str, settings: Sequence[str] = ()) -> Server:
    """A hot standby of the running `primary` (not started): pg_basebackup -R copies its data
    directory over the replication protocol (initdb's pg_hba.conf trusts replication from
    127.0.0.1) and writes standby.signal and primary_conninfo. It streams WAL from the primary
    once started; its application_name is its cluster_name setting when one is given."""
    s = Server(primary.procs, primary.bindir, primary.root, name, settings, initdb=False)
    subprocess.run([os.path.join(primary.bindir, "pg_basebackup"), "-D", s.data, "-h", "127.0.0.1", "-p", str(primary.port),
                    "-U", "postgres", "-X", "stream", "-R", "-c", "fast", "--no-sync"],
                   check=True, capture_output=True, **s.as_pg)
    return s


def _copy_text(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"  # standard_conforming_strings is on by default


def encode_copy(part: list[Event]) -> tuple[bytes, int]:
    """BEGIN; COPY events; COPY edges; COMMIT as one pipelined write: 4 ReadyForQuery back."""
    ev = "".join(f"{e.id}\t{_copy_text(e.type)}\t{e.ts}\t{_copy_text(e.stream)}\t{_copy_text(e.message)}\t"
                 f"{_copy_text(e.payload)}\n" for e in part)
    ed = "".join(f"{e.id}\t{p}\n" for e in part for p in e.parents)
    data = (pg_query("BEGIN") + pg_query("COPY events FROM STDIN") + pg_copy_data(ev.encode()) + PG_COPY_DONE
            + pg_query("COPY edges FROM STDIN") + pg_copy_data(ed.encode()) + PG_COPY_DONE + pg_query("COMMIT"))
    return data, 4


def encode_insert(part: list[Event]) -> tuple[bytes, int]:
    """One simple query: BEGIN; INSERT events (multi-row); INSERT edges (multi-row); COMMIT."""
    ev = ",".join(f"({e.id},{_lit(e.type)},{e.ts},{_lit(e.stream)},{_lit(e.message)},{_lit(e.payload)})" for e in part)
    ed = ",".join(f"({e.id},{p})" for e in part for p in e.parents)
    sql = f"BEGIN;INSERT INTO events VALUES {ev};" + (f"INSERT INTO edges VALUES {ed};" if ed else "") + "COMMIT"
    return pg_query(sql), 1


def send(conn: PGConn, job: runner.Job) -> None:
    conn.pipeline(job.data, job.check)


def encode_jobs(events: list[Event], size: int, method: str) -> list[runner.Job]:
    encode = encode_copy if method == "copy" else encode_insert
    jobs = []
    for b, part in enumerate(batches(events, size)):
        data, ready = encode(part)
        jobs.append(runner.Job(b, data, len(part), ready))
    return jobs


def ingest(server: Server, label: str, jobs: list[runner.Job], conns: int, seconds_max: float) -> runner.RunResult:
    """One measured run into freshly created tables; the row count must equal what was
    acknowledged."""
    server.reset()
    result = runner.run(f"postgres {label}", runner.round_robin(jobs, conns), lambda: server.connect(),
                        send, seconds_max, server.proc.pid)
    n_events, n_edges = server.counts()
    if n_events != result.events:
        raise RuntimeError(f"postgres {label}: {n_events:,} rows in events, {result.events:,} acknowledged")
    log(f"postgres {label}: {n_events:,} events, {n_edges:,} edges stored")
    return result


# --------------------------------------------------------------------------- queries


class QueryClient:
    def __init__(self, server: Server, seconds_max: float):
        self.conn = server.connect(timeout=seconds_max + 30)
        self.conn.query(f"SET statement_timeout = '{int(seconds_max * 1000)}ms'")
        # A session setting, not a server one: room for the BFS's visited table in memory
        # (the default 8 MB spills it to temp files from about 200,000 visited ids on).
        self.conn.query("SET temp_buffers = '256MB'")
        self.conn.query("CREATE TEMP TABLE bfs_seen (id bigint PRIMARY KEY)")
        self.conn.query(BFS_FUNCTION)

    def _one(self, sql: str) -> Optional[int]:
        try:
            (row,) = self.conn.query(sql)
        except PGError as e:
            if e.sqlstate == "57014":  # query_canceled: statement_timeout
                raise TimeoutError(str(e)) from None
            raise
        return None if row[0] is None else int(row[0])

    # UNION (not UNION ALL) dedupes against everything found so far: each event once.
    def ancestors(self, x: int) -> int:
        return self._one(f"WITH RECURSIVE a(id) AS (SELECT parent FROM edges WHERE child = {x} "
                         f"UNION SELECT e.parent FROM edges e JOIN a ON e.child = a.id) SELECT count(*) FROM a")

    def descendants(self, x: int) -> int:
        return self._one(f"WITH RECURSIVE d(id) AS (SELECT child FROM edges WHERE parent = {x} "
                         f"UNION SELECT e.child FROM edges e JOIN d ON e.parent = d.id) SELECT count(*) FROM d")

    def path_hops(self, a: int, b: int) -> Optional[int]:
        return self._one(f"SELECT bfs_hops({a}, {b})")

    def close(self) -> None:
        self.conn.close()


def load(server: Server, events: list[Event], conns: int, seconds_max: float) -> runner.RunResult:
    """The full dataset for the queries: COPY in batches of 1,000, then ANALYZE (what autovacuum
    would do soon after such a load) so the planner knows the tables' sizes."""
    result = ingest(server, "load for queries (COPY 1000)", encode_jobs(events, 1000, "copy"), conns, seconds_max)
    server.sql("ANALYZE")
    return result
