"""Minimal blocking wire clients over raw sockets, so every server gets pre-encoded bytes and
the Python client does as little as possible per request: HTTP/1.1 (Banyan), RESP (Redis) and
the PostgreSQL v3 protocol (simple queries and COPY, trust authentication only)."""

from __future__ import annotations

import socket
import struct
from typing import Optional


def connect(port: int, timeout: float) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class WireError(RuntimeError):
    pass


# --------------------------------------------------------------------------- HTTP


class HTTPConn:
    """One keep-alive HTTP/1.1 connection; requests are complete pre-encoded byte strings."""

    def __init__(self, port: int, timeout: float = 120):
        self.sock = connect(port, timeout)
        self.buf = bytearray()

    def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        length = None
        for h in head[1:]:
            name, _, value = h.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                raise WireError("chunked responses are not expected from this server")
        if length is None:
            raise WireError(f"HTTP {status} without Content-Length")
        total = end + 4 + length
        while len(self.buf) < total:
            self._fill()
        body = bytes(self.buf[end + 4:total])
        del self.buf[:total]
        return status, body

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise WireError("the server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def http_request(method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body or method == "POST":
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


# --------------------------------------------------------------------------- RESP


def resp_command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RESPConn:
    """Sends a pipeline of commands whose replies are all bulk strings or integers and waits
    for all of them: counting CRLFs is enough, and it keeps the client cheap. An error reply
    (a line starting with '-') fails the call."""

    def __init__(self, port: int, timeout: float = 120):
        self.sock = connect(port, timeout)

    def pipeline_bulk(self, data: bytes, replies: int) -> None:
        """`replies` bulk-string replies ("$N\\r\\n<value>\\r\\n": two CRLFs each)."""
        self.sock.sendall(data)
        need, seen, tail, first = 2 * replies, 0, b"", True
        while seen < need:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise WireError("redis closed the connection")
            if (first and chunk[:1] == b"-") or b"\n-" in chunk:
                raise WireError(f"redis error: {chunk[:200]!r}")
            first = False
            data2 = tail + chunk
            seen += data2.count(b"\r\n")
            tail = b"\r" if data2.endswith(b"\r") else b""
        if seen != need:
            raise WireError(f"redis sent {seen} lines, expected {need}")

    def call(self, *args: bytes) -> bytes:
        """One command; the raw reply line(s) (enough for INFO-less checks like XLEN, PING)."""
        self.sock.sendall(resp_command(*args))
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise WireError("redis closed the connection")
            data += chunk
        if data.startswith(b"-"):
            raise WireError(f"redis error: {data[:200]!r}")
        return data

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- PostgreSQL


class PGError(WireError):
    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        self.sqlstate = fields.get("C", "")
        super().__init__(f"postgres {fields.get('S', 'ERROR')} {self.sqlstate}: {fields.get('M', '')}")


def pg_query(sql: str) -> bytes:
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!i", len(body) + 4) + body


def pg_copy_data(data: bytes) -> bytes:
    return b"d" + struct.pack("!i", len(data) + 4) + data


PG_COPY_DONE = b"c" + struct.pack("!i", 4)


class PGConn:
    """PostgreSQL v3 protocol: startup with trust authentication, simple queries with text
    results, and pre-encoded pipelines (several Query/CopyData messages sent at once)."""

    def __init__(self, port: int, user: str = "postgres", database: str = "postgres", timeout: float = 300):
        self.sock = connect(port, timeout)
        self.buf = bytearray()
        self.pos = 0
        params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
        body = struct.pack("!i", 196608) + params
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        error = None
        while True:
            kind, payload = self._message()
            if kind == b"R" and struct.unpack("!i", payload[:4])[0] != 0:
                raise WireError("postgres asks for a password; the cluster must use trust authentication")
            if kind == b"E":
                error = PGError(_fields(payload))
                break  # the server closes the connection after a startup error
            if kind == b"Z":
                break
        if error:
            raise error

    def _fill(self) -> None:
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise WireError("postgres closed the connection")
        self.buf += chunk

    def _message(self) -> tuple[bytes, bytes]:
        while len(self.buf) - self.pos < 5:
            self._fill()
        kind = bytes(self.buf[self.pos:self.pos + 1])
        length = struct.unpack_from("!i", self.buf, self.pos + 1)[0]
        while len(self.buf) - self.pos < 1 + length:
            self._fill()
        payload = bytes(self.buf[self.pos + 5:self.pos + 1 + length])
        self.pos += 1 + length
        return kind, payload

    def pipeline(self, data: bytes, ready_count: int) -> None:
        """Sends pre-encoded messages and reads until `ready_count` ReadyForQuery; any
        ErrorResponse fails the call (after the pipeline is drained)."""
        self.sock.sendall(data)
        error = None
        seen = 0
        while seen < ready_count:
            kind, payload = self._message()
            if kind == b"Z":
                seen += 1
            elif kind == b"E" and error is None:
                error = PGError(_fields(payload))
        if error:
            raise error

    def query(self, sql: str) -> list[list[Optional[str]]]:
        """Runs a simple query (one or more statements); rows of the last result as text."""
        self.sock.sendall(pg_query(sql))
        rows: list[list[Optional[str]]] = []
        error = None
        while True:
            kind, payload = self._message()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                rows.append(_data_row(payload))
            elif kind == b"E" and error is None:
                error = PGError(_fields(payload))
            elif kind == b"Z":
                break
        if error:
            raise error
        return rows

    def close(self) -> None:
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        except OSError:
            pass
        self.sock.close()


def _fields(payload: bytes) -> dict[str, str]:
    out = {}
    for part in payload.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def _data_row(payload: bytes) -> list[Optional[str]]:
    (n,) = struct.unpack_from("!h", payload, 0)
    pos, row = 2, []
    for _ in range(n):
        (ln,) = struct.unpack_from("!i", payload, pos)
        pos += 4
        if ln < 0:
            row.append(None)
        else:
            row.append(payload[pos:pos + ln].decode())
            pos += ln
    return row
