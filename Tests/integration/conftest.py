"""Shared fixtures for Banyan's Python integration tests.

These tests drive the real `banyan` binary as a subprocess over loopback HTTP.

    BANYAN_BIN   path of the binary (default: <repo>/.build/debug/banyan)

Fixtures
    banyan_bin      Path of the binary; FAILS (never skips) if it is missing, so a
                    broken build can't turn the suite green.
    server          a started `banyan serve` on a fresh data dir (tmp_path/data)
    server_factory  start more servers, e.g. server_factory(extra_args=[...]);
                    env={"BANYAN_TOKENS": "t:read"} adds/overrides environment
                    variables of the server process (None as a value removes one),
                    host="0.0.0.0" changes --host (the URL stays 127.0.0.1)
    verify          run `banyan verify --data-dir DIR --json` -> VerifyResult
    run_banyan      run any banyan subcommand, bounded in time

Every server's stdout/stderr goes to a log file under tmp_path; when a test fails,
the tail of each log is attached to the failure report ("banyan log ..." section).
Teardown always kills whatever is still running.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / ".build" / "debug" / "banyan"

HEALTH_TIMEOUT_S = 30.0      # contract: ready when GET /healthz answers 200
SHUTDOWN_TIMEOUT_S = 15.0    # generous bound for a graceful SIGTERM shutdown
LOG_TAIL_CHARS = 20_000      # how much of a server log to show on failure


# --------------------------------------------------------------------------
# binary + small helpers


def _resolve_bin() -> Path:
    return Path(os.environ.get("BANYAN_BIN") or DEFAULT_BIN)


@pytest.fixture(scope="session")
def banyan_bin() -> Path:
    path = _resolve_bin()
    if not path.is_file() or not os.access(path, os.X_OK):
        # Deliberately a failure, not a skip: a missing binary must not look like a pass.
        pytest.fail(
            f"banyan binary not found or not executable at {path}. "
            f"Build it (`swift build` in {REPO_ROOT}) or point BANYAN_BIN at it.",
            pytrace=False,
        )
    return path


def free_port() -> int:
    """A loopback port that was free a moment ago (the server may still lose a race
    for it; start() retries on a new port if the process dies during start-up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(overrides: Optional[dict[str, Optional[str]]]) -> Optional[dict[str, str]]:
    """os.environ with `overrides` applied (a None value removes the variable);
    None when there is nothing to override (the child inherits our environment)."""
    if not overrides:
        return None
    env = dict(os.environ)
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _tail(path: Path, limit: int = LOG_TAIL_CHARS) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"<could not read {path}: {e}>"
    text = data[-limit:].decode("utf-8", errors="replace")
    return ("...[truncated]...\n" if len(data) > limit else "") + text


# --------------------------------------------------------------------------
# server handle


class BanyanServer:
    """One `banyan serve` process bound to one data dir. restart() reuses the dir."""

    def __init__(self, bin_path: Path, data_dir: Path, log_path: Path,
                 extra_args: tuple[str, ...] = (), fsync: str = "group",
                 env: Optional[dict[str, Optional[str]]] = None, host: str = "127.0.0.1",
                 nofile: Optional[int] = None) -> None:
        self.bin = bin_path
        self.nofile = nofile
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = tuple(extra_args)
        self.fsync = fsync
        self.env = dict(env) if env else None
        self.host = host
        self.port = free_port()
        # Every server gets its own gRPC port (the default, 7778, would collide).
        self.grpc_port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    # ---- properties -----------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return _tail(self.log_path)

    def client(self, timeout: float = 10.0):
        """A fresh real celestialtree.Client (own requests.Session) for this server."""
        import celestialtree  # imported lazily so conftest loads without it
        return celestialtree.Client(host="127.0.0.1", http_port=self.port, timeout=timeout)

    def command(self) -> list[str]:
        return [str(self.bin), "serve", "--data-dir", str(self.data_dir),
                "--host", self.host, "--port", str(self.port),
                "--fsync", self.fsync,
                *([] if "--grpc-port" in self.extra_args else ["--grpc-port", str(self.grpc_port)]),
                *self.extra_args]

    # ---- lifecycle ------------------------------------------------------

    def start(self, timeout: float = HEALTH_TIMEOUT_S) -> "BanyanServer":
        assert not self.alive(), "start() on a server that is already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A port picked by free_port() can be grabbed by someone else before the
        # server binds it; in that case the server exits early and we try a new
        # port. Bounded: 3 attempts.
        last_error = ""
        for attempt in range(3):
            self._spawn()
            ok, last_error = self._wait_healthy(timeout)
            if ok:
                return self
            if self.alive():
                # Running but never healthy within the deadline: no point retrying.
                break
            self.port, self.grpc_port = free_port(), free_port()
        self.kill9()
        raise AssertionError(
            f"banyan serve did not become healthy ({last_error}); "
            f"cmd={' '.join(self.command())}\n--- log {self.log_path} ---\n{self.log()}")

    def _spawn(self) -> None:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=str(self.data_dir.parent),
                env=process_env(self.env),
                # Own process group so a Ctrl-C on pytest doesn't race our own signals.
                start_new_session=True,
                preexec_fn=self._limit_descriptors if self.nofile else None,
            )

    def _limit_descriptors(self) -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _wait_healthy(self, timeout: float) -> tuple[bool, str]:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        delay = 0.02
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return False, f"process exited with status {rc} during start-up"
            try:
                r = requests.get(self.url + "/healthz", timeout=2)
                if r.status_code == 200:
                    return True, ""
                last = f"/healthz answered {r.status_code}"
            except requests.RequestException as e:
                last = f"/healthz: {type(e).__name__}"
            # Polling needs some pause; back off from 20 ms to 250 ms.
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        return False, f"timed out after {timeout:.0f}s, last: {last}"

    def kill9(self) -> None:
        """SIGKILL, then reap. The crash test's 'power cut'."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - kernel would have to be stuck
            raise AssertionError(f"pid {self.proc.pid} survived SIGKILL for 10 s")

    def thread_states(self) -> str:
        """Each thread's name, state and kernel wait channel, for a process that does not stop
        (no debugger needed): which threads are blocked, and on what."""
        lines = []
        try:
            for tid in sorted(os.listdir(f"/proc/{self.proc.pid}/task"), key=int):
                base = f"/proc/{self.proc.pid}/task/{tid}"
                try:
                    name = open(f"{base}/comm").read().strip()
                    state = open(f"{base}/stat").read().rsplit(")", 1)[1].split()[0]
                    wchan = open(f"{base}/wchan").read().strip()
                except OSError:
                    continue
                lines.append(f"{tid} {name} {state} {wchan}")
        except OSError as error:
            return f"(unreadable: {error})"
        return "\n".join(lines)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = SHUTDOWN_TIMEOUT_S) -> int:
        """Graceful shutdown; returns the exit status. If the process does not exit
        within `timeout`, it is SIGKILLed and an AssertionError is raised (the
        contract says SIGTERM/SIGINT shut down gracefully)."""
        assert self.proc is not None, "terminate() before start()"
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                threads = self.thread_states()
                self.kill9()
                raise AssertionError(
                    f"banyan serve ignored {signal.Signals(sig).name} for {timeout:.0f}s "
                    f"(killed it)\n--- threads (name, state, kernel wait) ---\n{threads}\n--- log ---\n{self.log()}")
        return self.proc.returncode

    def restart(self, timeout: float = HEALTH_TIMEOUT_S) -> "BanyanServer":
        """Start again on the same data dir (gracefully stopping first if running).
        The port is kept when possible; read .url/.port again afterwards."""
        if self.alive():
            self.terminate()
        return self.start(timeout)

    def cleanup(self) -> None:
        if self.alive():
            # Teardown: try to be nice briefly, then kill. Never raises.
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=5)
            except Exception:
                pass
        if self.alive():
            try:
                self.kill9()
            except Exception:
                pass


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture
def server_factory(request, banyan_bin, tmp_path) -> Callable[..., BanyanServer]:
    """server_factory(extra_args=(), data_dir=None, name=None, start=True, fsync="group",
    env=None, host="127.0.0.1", nofile=None): nofile sets the server's descriptor limit (ulimit -n)."""
    servers: list[BanyanServer] = []
    request.node._banyan_servers = servers  # read by pytest_runtest_makereport below

    def make(extra_args: tuple[str, ...] | list[str] = (), data_dir: Optional[Path] = None,
             name: Optional[str] = None, start: bool = True, fsync: str = "group",
             env: Optional[dict[str, Optional[str]]] = None,
             host: str = "127.0.0.1", nofile: Optional[int] = None) -> BanyanServer:
        n = len(servers)
        name = name or ("data" if n == 0 else f"data{n}")
        srv = BanyanServer(banyan_bin, data_dir or (tmp_path / name), tmp_path / f"{name}.log",
                           tuple(extra_args), fsync=fsync, env=env, host=host, nofile=nofile)
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in servers:
        srv.cleanup()


@pytest.fixture
def server(server_factory) -> BanyanServer:
    return server_factory()


@pytest.fixture(scope="module")
def module_server(request, banyan_bin, tmp_path_factory) -> BanyanServer:
    """One server shared by a module's read-only tests (error answers etc.), to
    avoid a server start per parametrized case. Tests using it must not depend
    on which events exist beyond what they create themselves."""
    base = tmp_path_factory.mktemp("module-server")
    yield from serve_for_module(request, BanyanServer(banyan_bin, base / "data", base / "module-data.log"))


def serve_for_module(request, srv: BanyanServer):
    """Starts `srv` for a module-scoped fixture (`yield from` it): its log goes with a failing
    test's report, and it is stopped after the module."""
    request.module._banyan_module_server = srv
    try:
        srv.start()
        yield srv
    finally:
        srv.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server logs to the report of a failing test (any phase)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        servers = list(getattr(item, "_banyan_servers", []))
        if "module_server" in getattr(item, "fixturenames", ()):
            mod_srv = getattr(item.module, "_banyan_module_server", None)
            if mod_srv is not None:
                servers.append(mod_srv)
        for srv in servers:
            rep.sections.append((f"banyan log {srv.log_path.name} ({call.when})", srv.log()))


# --------------------------------------------------------------------------
# CLI helpers


@dataclasses.dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"$ {' '.join(self.args)}\n[exit {self.returncode}]\n"
                f"--- stdout ---\n{self.stdout[-5000:]}\n--- stderr ---\n{self.stderr[-5000:]}")


@dataclasses.dataclass
class VerifyResult(CliResult):
    report: Optional[dict[str, Any]] = None

    @property
    def ok(self) -> bool:
        return bool(self.report and self.report.get("ok") is True and self.returncode == 0)


@pytest.fixture
def run_banyan(banyan_bin) -> Callable[..., CliResult]:
    def run(*args: str, timeout: float = 120.0) -> CliResult:
        cmd = [str(banyan_bin), *map(str, args)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{' '.join(cmd)} did not finish within {timeout}s; "
                                 f"stdout={e.stdout!r} stderr={e.stderr!r}")
        return CliResult(cmd, p.returncode, p.stdout, p.stderr)
    return run


def parse_verify_output(stdout: str) -> Optional[dict[str, Any]]:
    """`banyan verify --json` prints one JSON object. Tolerate log lines around it
    by taking the last line that parses as a JSON object."""
    text = stdout.strip()
    try:
        obj = json.loads(text)
        return obj if isinstance(obj, dict) else None
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


@pytest.fixture
def verify(run_banyan) -> Callable[[Path], VerifyResult]:
    """verify(data_dir) -> VerifyResult; asserts the output shape, not ok-ness."""
    def run(data_dir: Path, timeout: float = 120.0) -> VerifyResult:
        r = run_banyan("verify", "--data-dir", str(data_dir), "--json", timeout=timeout)
        report = parse_verify_output(r.stdout)
        res = VerifyResult(r.args, r.returncode, r.stdout, r.stderr, report)
        assert report is not None, f"verify --json printed no JSON object\n{res.describe()}"
        for key, typ in (("ok", bool), ("events", int), ("problems", list)):
            assert isinstance(report.get(key), typ), \
                f"verify report field {key!r} missing or not {typ.__name__}: {report}\n{res.describe()}"
        assert (r.returncode == 0) == (report["ok"] is True), \
            f"verify exit status must be 0 iff ok\n{res.describe()}"
        return res
    return run
