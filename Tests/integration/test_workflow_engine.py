"""The workflow engine as a process (docs/WORKFLOWS.md, "The engine process"): `banyan workflow
engine` and `banyan serve --workflows` drive runs that `banyan workflow run` only starts; http
tasks, approvals by signal, two engines racing on the same runs, and kill -9 of an engine in the
middle of a 50-task run."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from conftest import free_port
from test_v1_api import wait_until
from test_workflow import EXAMPLES, by_key, run_events, run_state


class Engine:
    """A `banyan workflow engine` process, its log in a file."""

    def __init__(self, banyan_bin: Path, url: str, log: Path, *args: str):
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen([str(banyan_bin), "workflow", "engine", "--server", url, *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def kill9(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def engines(banyan_bin, tmp_path):
    started: list[Engine] = []

    def make(url: str, *args: str) -> Engine:
        e = Engine(banyan_bin, url, tmp_path / f"engine{len(started)}.log", *args)
        started.append(e)
        return e

    yield make
    for e in started:
        e.stop()


def test_an_engine_process_drives_runs_that_run_only_starts(server, engines, run_banyan):
    engine = engines(server.url)
    r = run_banyan("workflow", "run", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--input", "base=5")
    assert r.returncode == 0 and len(r.stdout.split()) == 1, r.describe()
    run = r.stdout.strip()
    wait_until(lambda: run_state(server.url, run) == "completed", 30, "the engine to complete the run")
    assert by_key(server.url, f"run/{run}/task/join/attempt/1/completed")["payload"]["output"] == {"sum": 16}
    # --wait follows a run to its end, printing each task's changes.
    r = run_banyan("workflow", "run", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--input", "base=1", "--wait", timeout=60)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[-1] == "completed", r.describe()
    assert "join: completed" in lines, lines
    # A run failing for good: --wait exits 1 and says where it failed.
    failing = server.data_dir.parent / "failing.yaml"
    failing.write_text('name: failing\ntasks:\n  - {id: boom, kind: shell, run: ["sh", "-c", "exit 3"]}\n')
    r = run_banyan("workflow", "run", str(failing), "--server", server.url, "--wait", timeout=60)
    assert r.returncode == 1 and r.stdout.splitlines()[-1] == "failed: boom: exit code 3", r.describe()
    assert engine.proc.poll() is None, engine.text()


def test_serve_with_workflows_runs_an_engine_in_the_server(server_factory, run_banyan):
    srv = server_factory(["--workflows"])
    r = run_banyan("workflow", "run", str(EXAMPLES / "etl.yaml"), "--server", srv.url, "--wait", timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "completed", r.describe() + srv.log()
    run = r.stdout.splitlines()[0]
    assert by_key(srv.url, f"run/{run}/task/load/attempt/1/completed") is not None
    # Restarted, the server's engine finds a run requested while nothing drove it.
    srv.terminate()
    plain = server_factory(data_dir=srv.data_dir, name="plain")
    r = run_banyan("workflow", "run", str(EXAMPLES / "diamond.yaml"), "--server", plain.url, "--input", "base=2")
    run = r.stdout.strip()
    time.sleep(0.5)
    assert run_state(plain.url, run) == "running" and len(run_events(plain.url, run)) == 1
    plain.terminate()
    srv = server_factory(["--workflows"], data_dir=srv.data_dir, name="again")
    wait_until(lambda: run_state(srv.url, run) == "completed", 30, "the restarted server's engine to complete the run")


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_GET(self):
        # Headers at once, then a body that takes its time.
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "10")
        self.end_headers()
        self.wfile.write(b"slow")
        self.wfile.flush()
        time.sleep(4)
        self.wfile.write(b" body!")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Hook.received.append({"path": self.path, "body": json.loads(body), "auth": self.headers.get("X-Token"),
                              "task": self.headers.get("Banyan-Task-Key")})
        status = 500 if self.path == "/broken" else 201
        out = json.dumps({"accepted": True, "path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    Hook.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_http_tasks_send_their_request_and_capture_the_answer(server, run_banyan, tmp_path, hook):
    closed = free_port()
    flow = tmp_path / "http.yaml"
    flow.write_text(f"""
name: hooks
tasks:
  - {{id: count, kind: shell, run: ["echo", '{{"files": 3}}'], output: json}}
  - id: report
    kind: http
    start_when: "event:count.completed && {{{{ tasks.count.output.files > 0 }}}}"
    request:
      method: POST
      url: "{hook}/hook"
      headers: {{X-Token: "t-{{{{ tasks.count.output.files }}}}"}}
      body: {{files: "{{{{ tasks.count.output.files }}}}", note: "n={{{{ tasks.count.output.files }}}}"}}
      expect: [201]
  - id: echo
    kind: shell
    needs: [report]
    run: ["echo", "{{{{ tasks.report.output.body.path }}}}"]
""")
    r = run_banyan("workflow", "run", "--drive", str(flow), "--server", server.url, timeout=60)
    assert r.returncode == 0, r.describe()
    run = r.stdout.splitlines()[0]
    assert Hook.received[0] == {"path": "/hook", "body": {"files": 3, "note": "n=3"}, "auth": "t-3", "task": f"run/{run}/task/report"}
    report = by_key(server.url, f"run/{run}/task/report/attempt/1/completed")["payload"]["output"]
    assert report == {"status": 201, "content_type": "application/json", "body": {"accepted": True, "path": "/hook"}}, report
    assert by_key(server.url, f"run/{run}/task/echo/attempt/1/completed")["payload"]["output"] == "/hook"
    # An unexpected status and a closed port fail the task, saying why.
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"""
name: bad-hooks
tasks:
  - {{id: broken, kind: http, request: {{method: POST, url: "{hook}/broken", body: {{}}}}, on_failure: continue}}
  - {{id: closed, kind: http, request: {{url: "http://127.0.0.1:{closed}/x"}}, timeout: 5s, on_failure: continue}}
  - {{id: slow, kind: http, request: {{url: "{hook}/slow"}}, timeout: 1s}}
""")
    r = run_banyan("workflow", "run", "--drive", str(bad), "--server", server.url, timeout=60)
    assert r.returncode == 1, r.describe()
    run = r.stdout.splitlines()[0]
    broken = by_key(server.url, f"run/{run}/task/broken/attempt/1/failed")["payload"]
    assert broken["error"] == f"POST {hook}/broken answered 500 (expected 2xx)" and broken["status"] == 500, broken
    assert json.loads(broken["response"]) == {"accepted": True, "path": "/broken"}
    closed_failed = by_key(server.url, f"run/{run}/task/closed/attempt/1/failed")["payload"]["error"]
    assert closed_failed.startswith(f"GET http://127.0.0.1:{closed}/x: ") and "refused" in closed_failed.lower(), closed_failed
    slow = by_key(server.url, f"run/{run}/task/slow/attempt/1/failed")["payload"]
    assert slow["error"] == "the request timed out after 1.0 seconds" and slow["duration_ms"] < 2500, slow


APPROVAL = """
name: approval
tasks:
  - {id: build, kind: shell, run: ["echo", "built"]}
  - {id: approve, kind: wait_for_signal, needs: [build], signal: approval}
  - {id: ship, kind: shell, needs: [approve], run: ["echo", "shipped by {{ tasks.approve.output.by }}"]}
"""


def test_an_approval_waits_for_its_signal_across_an_engine_restart(server, engines, run_banyan, tmp_path):
    flow = tmp_path / "approval.yaml"
    flow.write_text(APPROVAL)
    engine = engines(server.url, "--heartbeat-ttl", "2s")
    r = run_banyan("workflow", "run", str(flow), "--server", server.url)
    run = r.stdout.strip()
    wait_until(lambda: by_key(server.url, f"run/{run}/task/approve/attempt/1/started") is not None, 30, "the approval to wait")
    time.sleep(0.5)
    assert run_state(server.url, run) == "running"
    # The wait survives the engine: a new engine goes on waiting (once the first one's heartbeats
    # are overdue), without a failed attempt.
    engine.kill9()
    engines(server.url, "--heartbeat-ttl", "2s")
    # Signals for a run that does not exist, or with a bad name, are refused.
    r = run_banyan("workflow", "signal", "no-such-run", "approval", "--server", server.url)
    assert r.returncode == 1 and "no run no-such-run" in r.stderr, r.describe()
    r = run_banyan("workflow", "signal", run, "bad/name", "--server", server.url)
    assert r.returncode == 1 and "not a signal name" in r.stderr, r.describe()
    r = run_banyan("workflow", "signal", run, "approval", "--payload", '{"by": "ana"}', "--server", server.url)
    assert r.returncode == 0, r.describe()
    wait_until(lambda: run_state(server.url, run) == "completed", 30, "the run to complete after the signal")
    assert by_key(server.url, f"run/{run}/task/approve/attempt/1/failed") is None
    approved = by_key(server.url, f"run/{run}/task/approve/attempt/1/completed")
    assert approved["payload"]["output"] == {"by": "ana"}
    signal_event = by_key(server.url, f"run/{run}/signal/approval")
    assert signal_event["id"] in approved["parents"], "the signal is among the completion's causes"
    assert by_key(server.url, f"run/{run}/task/ship/attempt/1/completed")["payload"]["output"] == "shipped by ana"
    # Sent again with the same payload: a no-op (a retry); with another payload: refused.
    r = run_banyan("workflow", "signal", run, "approval", "--payload", '{"by": "ana"}', "--server", server.url)
    assert r.returncode == 0 and "already sent" in r.stdout, r.describe()
    r = run_banyan("workflow", "signal", run, "approval", "--payload", '{"by": "bo"}', "--server", server.url)
    assert r.returncode == 1 and "with another payload" in r.stderr, r.describe()
    # A new signal to an ended run: refused.
    r = run_banyan("workflow", "signal", run, "other", "--server", server.url)
    assert r.returncode == 1 and "has already completed" in r.stderr, r.describe()


def test_an_approval_times_out(server, run_banyan, tmp_path):
    flow = tmp_path / "approval.yaml"
    flow.write_text(APPROVAL.replace("signal: approval}", "signal: approval, timeout: 1s}"))
    r = run_banyan("workflow", "run", "--drive", str(flow), "--server", server.url, timeout=60)
    assert r.returncode == 1 and r.stdout.splitlines()[-1] == "failed: approve: no signal approval within 1.0 seconds", r.describe()


def wide(n: int, effects: Path, pause: str, attempts: int = 3) -> str:
    lines = ["name: wide", "tasks:"]
    for i in range(n):
        lines.append(f'  - {{id: t{i:02d}, kind: shell, run: ["sh", "-c", "sleep {pause}; echo $BANYAN_TASK_KEY >> {effects}"],'
                     f' retry: {{max_attempts: {attempts}, backoff: {{initial: 50ms}}}}}}')
    return "\n".join(lines) + "\n"


def test_two_engines_racing_record_each_transition_once_and_run_each_task_once(server, engines, run_banyan, tmp_path):
    effects = tmp_path / "effects"
    flow = tmp_path / "wide.yaml"
    flow.write_text(wide(20, effects, "0.5", attempts=1))
    first = engines(server.url)
    runs = [run_banyan("workflow", "run", str(flow), "--server", server.url).stdout.strip() for _ in range(3)]
    # The second engine joins while the first runs attempts of every run: it must leave them alone.
    wait_until(lambda: all(by_key(server.url, f"run/{run}/task/t00/attempt/1/started") for run in runs), 30, "the first engine to claim")
    second = engines(server.url)
    alive = lambda: {e["payload"]["engine"] for e in requests.get(server.url + "/v1/events", params={"type": "workflow.engine.alive", "limit": 1000}, timeout=10).json()["events"]}
    wait_until(lambda: len(alive()) == 2, 30, "the second engine's first heartbeat")
    assert any(run_state(server.url, run) == "running" for run in runs), "the second engine joined while runs were still running"
    for run in runs:
        wait_until(lambda: run_state(server.url, run) != "running", 60, f"run {run} to end")
    claims = Counter()
    for run in runs:
        events = run_events(server.url, run)
        assert run_state(server.url, run) == "completed", [e for e in events if e["type"] == "workflow.task.failed"]
        assert not [e for e in events if e["type"] == "workflow.task.failed"], "no live attempt was taken for stopped"
        completions = Counter(e["payload"]["task"] for e in events if e["type"] == "workflow.task.completed")
        assert len(completions) == 20 and set(completions.values()) == {1}
        claims.update(e["payload"]["engine"] for e in events if e["type"] == "workflow.task.started")
    done = Counter(effects.read_text().split())
    assert len(done) == 60 and set(done.values()) == {1}, [k for k, v in done.items() if v != 1]
    print(f"attempts claimed per engine: {dict(claims)}")
    assert first.proc.poll() is None and second.proc.poll() is None


def test_an_engine_whose_heartbeats_stop_has_its_attempts_taken_over(server, engines, run_banyan, tmp_path):
    flow = tmp_path / "stuck.yaml"
    flow.write_text("""
name: stuck
tasks:
  - id: work
    kind: shell
    run: ["sh", "-c", "case $BANYAN_ATTEMPT_KEY in */attempt/1/started) sleep 60;; esac; echo done"]
    retry: {max_attempts: 2, backoff: {initial: 10ms}}
""")
    first = engines(server.url, "--heartbeat-ttl", "3s")
    run = run_banyan("workflow", "run", str(flow), "--server", server.url).stdout.strip()
    wait_until(lambda: by_key(server.url, f"run/{run}/task/work/attempt/1/started"), 30, "the first engine to claim")
    engines(server.url, "--heartbeat-ttl", "3s")
    time.sleep(4)  # longer than the ttl, and heartbeats go on: nothing is taken over
    assert by_key(server.url, f"run/{run}/task/work/attempt/1/failed") is None
    first.kill9()
    killed = time.time_ns()
    wait_until(lambda: run_state(server.url, run) == "completed", 30, "the second engine to take the attempt over")
    failed = by_key(server.url, f"run/{run}/task/work/attempt/1/failed")
    assert failed["payload"]["error"] == "the engine stopped during this attempt"
    assert failed["time_unix_nano"] - killed > 0.5e9, "taken over once the heartbeats were overdue, not at once"
    second_claim = by_key(server.url, f"run/{run}/task/work/attempt/2/started")["payload"]["engine"]
    assert second_claim != by_key(server.url, f"run/{run}/task/work/attempt/1/started")["payload"]["engine"]
    assert by_key(server.url, f"run/{run}/task/work/attempt/2/completed")["payload"]["output"] == "done"


def test_kill_9_of_an_engine_in_a_50_task_run_runs_no_completed_task_again(server, engines, run_banyan, tmp_path):
    effects = tmp_path / "effects"
    flow = tmp_path / "wide.yaml"
    flow.write_text(wide(50, effects, "0.2"))
    engine = engines(server.url, "--max-concurrent-tasks", "6")
    run = run_banyan("workflow", "run", str(flow), "--server", server.url).stdout.strip()

    def completed() -> set[str]:
        return {e["payload"]["task"] for e in run_events(server.url, run) if e["type"] == "workflow.task.completed"}

    wait_until(lambda: len(completed()) >= 15, 60, "15 tasks to complete")
    engine.kill9()
    before = completed()
    assert len(before) < 50
    engines(server.url, "--max-concurrent-tasks", "6")
    wait_until(lambda: run_state(server.url, run) == "completed", 90, "the restarted engine to complete the run")
    events = run_events(server.url, run)
    completions = Counter(e["payload"]["task"] for e in events if e["type"] == "workflow.task.completed")
    assert len(completions) == 50 and set(completions.values()) == {1}, "every task completed exactly once in the log"
    done = Counter(line.split("/")[3] for line in effects.read_text().split())
    assert all(done[task] == 1 for task in before), {t: done[t] for t in before if done[t] != 1}
    assert set(done) == set(completions), "every task's work ran"
    stopped = [e for e in events if e["type"] == "workflow.task.failed"]
    assert all(e["payload"]["error"] == "the engine stopped during this attempt" for e in stopped), stopped


CHILD = """
name: child
inputs: {n: {type: number}}
tasks:
  - {id: double, kind: shell, run: ["sh", "-c", "echo {\\\\\\"value\\\\\\": $(( {{ inputs.n }} * 2 ))}"], output: json}
  - {id: check, kind: shell, needs: [double], run: ["sh", "-c", "test {{ tasks.double.output.value }} -lt 100"]}
"""

PARENT = """
name: parent
inputs: {n: {type: number, default: 4}}
tasks:
  - {id: prepare, kind: shell, run: ["sh", "-c", "echo {\\\\\\"n\\\\\\": {{ inputs.n }}}"], output: json}
  - {id: sub, kind: sub_workflow, workflow: child, needs: [prepare], inputs: {n: "{{ tasks.prepare.output.n }}"}}
  - {id: report, kind: shell, needs: [sub], run: ["echo", "{{ tasks.sub.output.outputs.double.value }}"]}
"""


def test_a_sub_workflow_runs_as_a_child_run_and_passes_its_outputs_back(server, engines, run_banyan, tmp_path):
    (tmp_path / "child.yaml").write_text(CHILD)
    parent = tmp_path / "parent.yaml"
    parent.write_text(PARENT)
    r = run_banyan("workflow", "validate", str(parent))
    assert r.returncode == 0 and r.stdout.endswith("sub-workflows: child\n"), r.describe()
    r = run_banyan("workflow", "run", "--drive", str(parent), "--server", server.url, timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "completed", r.describe()
    run = r.stdout.splitlines()[0]
    assert by_key(server.url, f"run/{run}/task/report/attempt/1/completed")["payload"]["output"] == "8"
    sub = by_key(server.url, f"run/{run}/task/sub/attempt/1/completed")
    child = sub["payload"]["output"]["run"]
    assert sub["payload"]["output"]["outputs"]["double"] == {"value": 8}
    request = by_key(server.url, f"run/{child}/requested")
    assert request["payload"]["parent"] == f"run/{run}/task/sub/attempt/1/started" and request["stream"] == f"job_events:{child}"
    assert by_key(server.url, f"run/{child}/completed")["id"] in sub["parents"], "the child's end caused the task's completion"
    # Through an engine process too; a child that fails fails its task, saying where.
    engines(server.url)
    r = run_banyan("workflow", "run", str(parent), "--server", server.url, "--input", "n=60", "--wait", timeout=60)
    assert r.returncode == 1 and r.stdout.splitlines()[-1].startswith("failed: sub: sub-workflow child (run sub-"), r.describe()
    assert "failed at check: exit code 1" in r.stdout.splitlines()[-1]
    # A child whose definition is not beside the parent, and a workflow that runs itself, are refused before anything is recorded.
    (tmp_path / "child.yaml").unlink()
    r = run_banyan("workflow", "run", str(parent), "--server", server.url)
    assert r.returncode == 1 and "task sub runs workflow child, whose definition was not given" in r.stderr, r.describe()
    (tmp_path / "child.yaml").write_text(CHILD.replace("tasks:\n", "tasks:\n  - {id: again, kind: sub_workflow, workflow: parent}\n"))
    r = run_banyan("workflow", "run", str(parent), "--server", server.url)
    assert r.returncode == 1 and "workflow parent runs itself through parent -> child -> parent" in r.stderr, r.describe()


def test_cancelling_a_run_kills_its_attempts_compensates_and_ends_it(server, engines, run_banyan, tmp_path):
    log = tmp_path / "log"
    flow = tmp_path / "long.yaml"
    flow.write_text(f"""
name: long
tasks:
  - {{id: book, kind: shell, run: ["sh", "-c", "echo book >> {log}"], compensate: {{kind: shell, run: ["sh", "-c", "echo unbook >> {log}"]}}}}
  - {{id: work, kind: shell, needs: [book], run: ["sh", "-c", "echo working >> {log}; sleep 30; echo finished >> {log}"]}}
  - {{id: approve, kind: wait_for_signal, needs: [book], signal: go}}
""")
    engines(server.url)
    run = run_banyan("workflow", "run", str(flow), "--server", server.url).stdout.strip()
    wait_until(lambda: log.exists() and "working" in log.read_text().split(), 30, "the long task to start")
    r = run_banyan("workflow", "cancel", run, "--reason", "changed my mind", "--server", server.url)
    assert r.returncode == 0 and r.stdout.strip() == f"asked to cancel run {run}", r.describe()
    wait_until(lambda: run_state(server.url, run) == "cancelled", 30, "the run to be cancelled")
    ended = by_key(server.url, f"run/{run}/cancelled")
    assert ended["payload"]["reason"] == "changed my mind" and ended["payload"]["compensations_failed"] == []
    for task in ("work", "approve"):
        cancelled = by_key(server.url, f"run/{run}/task/{task}/attempt/1/cancelled")
        assert cancelled is not None, task
        assert by_key(server.url, f"run/{run}/task/{task}/attempt/1/failed") is None, "cancelled, not counted as a failure"
    time.sleep(1)
    assert log.read_text().split() == ["book", "working", "unbook"], "the long task was killed; what completed was compensated"
    r = run_banyan("workflow", "status", run, "--server", server.url)
    assert r.stdout.splitlines()[0].endswith("cancelled: changed my mind"), r.describe()
    # Asking again is a no-op; a run that ended cannot be cancelled; nor can an unknown one.
    r = run_banyan("workflow", "cancel", run, "--server", server.url)
    assert r.returncode == 0 and "already asked" in r.stdout, r.describe()
    done = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--input", "base=1").stdout.split()[0]
    r = run_banyan("workflow", "cancel", done, "--server", server.url)
    assert r.returncode == 1 and f"run {done} has already completed" in r.stderr, r.describe()
    r = run_banyan("workflow", "cancel", "nope", "--server", server.url)
    assert r.returncode == 1 and "no run nope" in r.stderr, r.describe()


def test_cancelling_reaches_a_resumed_wait_and_a_child_run(server, engines, run_banyan, tmp_path):
    (tmp_path / "child.yaml").write_text("""
name: child
tasks:
  - {id: hold, kind: wait_for_signal, signal: never}
""")
    parent = tmp_path / "parent.yaml"
    parent.write_text("""
name: parent
tasks:
  - {id: sub, kind: sub_workflow, workflow: child}
  - {id: approve, kind: wait_for_signal, signal: go}
""")
    first = engines(server.url, "--engine-id", "same")
    run = run_banyan("workflow", "run", str(parent), "--server", server.url).stdout.strip()
    wait_until(lambda: by_key(server.url, f"run/{run}/task/approve/attempt/1/started"), 30, "the waits to start")
    sub = by_key(server.url, f"run/{run}/task/sub/attempt/1/started")
    assert sub is not None
    # Restarted under the same name: the engine resumes the waits it held.
    first.kill9()
    engines(server.url, "--engine-id", "same")
    time.sleep(1)
    r = run_banyan("workflow", "cancel", run, "--reason", "stop", "--server", server.url)
    assert r.returncode == 0, r.describe()
    wait_until(lambda: run_state(server.url, run) == "cancelled", 30, "the parent to be cancelled")
    for task in ("sub", "approve"):
        assert by_key(server.url, f"run/{run}/task/{task}/attempt/1/cancelled") is not None, task
    children = [e for e in requests.get(server.url + "/v1/events", params={"type": "workflow.run.requested", "limit": 100}, timeout=10).json()["events"]
                if e["payload"].get("parent") == f"run/{run}/task/sub/attempt/1/started"]
    assert len(children) == 1
    child = children[0]["payload"]["run"]
    assert run_state(server.url, child) == "cancelled", "the child run was cancelled with its parent"
    assert by_key(server.url, f"run/{child}/task/hold/attempt/1/cancelled") is not None


def test_wait_follows_a_run_across_a_server_restart_without_repeating_a_line(server, engines, banyan_bin, tmp_path):
    flow = tmp_path / "nap.yaml"
    flow.write_text("""
name: nap
tasks:
  - {id: first, kind: shell, run: ["echo", "one"]}
  - {id: nap, kind: sleep, duration: 3s, needs: [first]}
  - {id: last, kind: shell, run: ["echo", "two"], needs: [nap]}
""")
    engines(server.url)
    proc = subprocess.Popen([str(banyan_bin), "workflow", "run", str(flow), "--server", server.url, "--wait"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    run = proc.stdout.readline().strip()
    wait_until(lambda: by_key(server.url, f"run/{run}/task/nap/attempt/1/started"), 30, "the nap to start")
    port = server.port
    server.kill9()
    server.restart()
    if server.port != port:
        proc.kill()
        pytest.skip(f"port {port} was taken meanwhile; the follower cannot be pointed elsewhere")
    out, err = proc.communicate(timeout=60)
    lines = out.splitlines()
    assert proc.returncode == 0 and lines[-1] == "completed", (out, err)
    assert lines == ["first: started", "first: completed", "nap: started", "nap: completed", "last: started", "last: completed", "completed"], lines


def events_of_type(url: str, type_: str) -> list[dict]:
    out, after = [], 0
    while True:
        page = requests.get(url + "/v1/events", params={"type": type_, "after": after, "limit": 10000}, timeout=30).json()
        out += page["events"]
        if page["next"] <= after or page["next"] >= page["last_id"]:
            return out
        after = page["next"]


def test_three_engines_share_300_runs_and_take_over_a_killed_ones(server, engines, run_banyan, tmp_path):
    effects, gate = tmp_path / "effects", tmp_path / "gate"
    flow = tmp_path / "pair.yaml"
    # b waits (at most two minutes) for the gate, which opens after the kill: so the killed engine
    # certainly holds unfinished runs, however fast this machine is.
    wait_gate = f"i=0; while [ ! -e {gate} ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; "
    flow.write_text(f"""name: pair
tasks:
  - {{id: a, kind: shell, run: ["sh", "-c", "echo $BANYAN_TASK_KEY >> {effects}; sleep 0.05"], retry: {{max_attempts: 3, backoff: {{initial: 10ms}}}}}}
  - {{id: b, kind: shell, needs: [a], run: ["sh", "-c", "{wait_gate}echo $BANYAN_TASK_KEY >> {effects}"], retry: {{max_attempts: 3, backoff: {{initial: 10ms}}}}}}
""")
    ttl = 4
    es = [engines(server.url, "--heartbeat-ttl", f"{ttl}s", "--engine-id", f"e{i}") for i in range(3)]
    alive = lambda: {e["payload"]["engine"] for e in events_of_type(server.url, "workflow.engine.alive")}
    wait_until(lambda: alive() == {"e0", "e1", "e2"}, 30, "three engines' heartbeats")
    time.sleep(1.5)  # each engine reads the others' heartbeats every second
    runs = [f"r{i:03d}" for i in range(300)]
    # The first through the CLI (for the definition's version); the rest straight into the log in
    # batches, as any client may record requests: the engines pick them up alike.
    r = run_banyan("workflow", "run", str(flow), "--server", server.url, "--run", runs[0])
    assert r.returncode == 0, r.describe()
    version = by_key(server.url, f"run/{runs[0]}/requested")["payload"]["version"]
    batch = [{"type": "workflow.run.requested", "key": f"run/{run}/requested", "stream": f"job_events:{run}",
              "payload": {"run": run, "workflow": "pair", "version": version, "definition": flow.read_text(), "inputs": {}}} for run in runs[1:]]
    for i in range(0, len(batch), 100):
        assert requests.post(server.url + "/v1/events", json=batch[i:i + 100], timeout=30).status_code == 200

    def completed_runs() -> int:
        return len(events_of_type(server.url, "workflow.run.completed"))

    def holders() -> dict[str, tuple[int, str]]:
        latest: dict[str, tuple[int, str]] = {}
        for c in events_of_type(server.url, "workflow.run.claimed"):
            run, n = c["payload"]["run"], int(c["payload"]["claim"])
            if latest.get(run, (0, ""))[0] < n:
                latest[run] = (n, c["payload"]["engine"])
        return latest

    wait_until(lambda: len(events_of_type(server.url, "workflow.task.completed")) >= 60, 120, "a fifth of the runs' first tasks to complete")
    held = Counter(e["payload"]["engine"] for e in events_of_type(server.url, "workflow.run.claimed"))
    # Every engine drives runs (the killed one must hold some). How evenly is the preferred
    # engine's hash (RunLifecycleTests); here an engine starved of CPU on two shared cores for
    # longer than the claim grace (1 s) leaves its share to the others, as it should, so the
    # spread itself is printed, not asserted.
    assert all(held[f"e{i}"] >= 1 for i in range(3)), f"runs spread over the engines: {dict(held)}"
    print(f"claims per engine before the kill: {dict(held)}")
    es[1].kill9()
    killed = time.time()
    # Each run e1 held, with the number of its claim: the claim after it must take it over.
    held_by_e1 = {run: n for run, (n, engine) in holders().items() if engine == "e1"}
    gate.touch()
    wait_until(lambda: completed_runs() == 300, 180, "every run to complete")
    claims = events_of_type(server.url, "workflow.run.claimed")
    # The takeovers are told by claim number, not by time: a claim's time is given when it is
    # sequenced, before it can be read, so a takeover of a starved e1 stamped just before the kill
    # can still be unseen by holders() above (CI once: 30 of e1's 115 runs, all taken over).
    takeovers = [c for c in claims if c["payload"].get("takeover_of") == "e1" and held_by_e1.get(c["payload"]["run"]) == int(c["payload"]["claim"]) - 1]
    missed = sorted(set(held_by_e1) - {c["payload"]["run"] for c in takeovers})
    assert held_by_e1 and not missed, \
        f"each run the killed engine held ({len(held_by_e1)}) was taken over: {len(takeovers)} takeovers; claims per engine {dict(held)}; " \
        f"claims of the first runs not taken over: {[c['payload'] for c in claims if c['payload']['run'] in missed[:3]]}"
    first = min(c["time_unix_nano"] for c in takeovers) / 1e9
    print(f"{sum(c['time_unix_nano'] / 1e9 < killed for c in takeovers)} of e1's runs were taken over before the kill")
    # A live engine starved of CPU for a ttl (this machine runs the server, three engines and
    # their shell tasks on two cores) can be taken for stopped: its runs then have two drivers,
    # which the attempt claims keep correct. Printed, not asserted.
    others = Counter(c["payload"]["takeover_of"] for c in claims if c["payload"].get("takeover_of") not in (None, "e1"))
    print(f"claims per engine: {dict(Counter(c['payload']['engine'] for c in claims))}, "
          f"{len(takeovers)} runs taken over, first {first - killed:.2f} s after the kill (ttl {ttl} s); live engines taken over: {dict(others)}")
    # The lease runs from its last heartbeat (server time, as the claims' times are). That is
    # normally up to a third of the ttl before the kill, but an engine starved of CPU may have
    # beaten last well before it (CI once saw the first takeover 0.07 s after the kill).
    last_beat = max(e["time_unix_nano"] for e in events_of_type(server.url, "workflow.engine.alive") if e["payload"]["engine"] == "e1") / 1e9
    print(f"e1's last heartbeat {killed - last_beat:.2f} s before the kill")
    # Where live engines were taken for stopped too, engines were starved past a ttl, and their
    # view of e1's lease was as stale as of the others' (CI once saw e1 taken over 1.2 s after
    # its last heartbeat, beside 55 takeovers of live engines): the timing then says nothing.
    if not others:
        assert last_beat + ttl - 0.5 <= first <= max(killed, last_beat + ttl) + 4, "taken over once the lease ran out, soon after"
    # Every task completed exactly once in the log; only the killed engine's attempts may have run twice.
    completions = Counter(e["key"].rsplit("/attempt/", 1)[0] for e in events_of_type(server.url, "workflow.task.completed"))
    assert len(completions) == 600 and set(completions.values()) == {1}
    done = Counter(effects.read_text().split())
    assert set(done) == set(completions)
    twice = [k for k, v in done.items() if v > 1]
    started_by_e1 = {e["key"].rsplit("/attempt/", 1)[0] for e in events_of_type(server.url, "workflow.task.started") if e["payload"].get("engine") == "e1"}
    assert set(twice) <= started_by_e1, twice
    assert es[0].proc.poll() is None and es[2].proc.poll() is None
