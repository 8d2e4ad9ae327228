"""Workflows written in Swift (docs/WORKFLOWS.md, "Workflows in Swift"), through the example
program examples/swift (banyan-workflow-example): steps, retries, parallel steps, a durable
sleep and a child workflow, each an event; kill -9 in the middle and a second run of the same
run id replays the completed steps from the log instead of running them again."""
from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from test_v1_api import wait_until
from test_workflow import by_key, run_events, run_state


@pytest.fixture
def example(banyan_bin):
    path = banyan_bin.parent / "banyan-workflow-example"
    assert path.exists(), f"{path} is built with the package (swift build --build-tests)"
    return path


def run_example(example, server, *args, timeout=60):
    return subprocess.run([str(example), "--server", server.url, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_a_code_workflow_survives_kill_9_and_replays_completed_steps(server, example, tmp_path):
    effects = tmp_path / "effects"
    proc = subprocess.Popen([str(example), "--server", server.url, "--run", "order-7", "--effects", str(effects), "--pause", "10s", "--fail-charge", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_until(lambda: by_key(server.url, "run/order-7/task/sleep-1/attempt/1/started"), 30, "the durable sleep to start")
    proc.kill()
    proc.wait(10)
    before = Counter(effects.read_text().split())
    assert before == {"charge": 2, "email": 1, "sms": 1}, before  # one declined charge, then its retry
    r = run_example(example, server, "--run", "order-7", "--effects", str(effects), "--pause", "10s")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[1]) == {"order": "order-7", "charged": 42, "notified": ["email", "sms"], "label": "label-order-7"}
    after = Counter(effects.read_text().split())
    assert after == {"charge": 2, "email": 1, "sms": 1, "label": 1, "confirm": 1}, "completed steps were replayed, not run again"
    events = run_events(server.url, "order-7")
    completed = Counter(e["payload"]["task"] for e in events if e["type"] == "workflow.task.completed")
    assert completed == {"charge": 1, "email": 1, "sms": 1, "sleep-1": 1, "ship": 1, "confirm": 1}, completed
    assert by_key(server.url, "run/order-7/task/charge/attempt/1/failed")["payload"]["error"] == "the card was declined"
    # The sleep was interrupted by the kill: recorded so, and it fired on time from its first start.
    assert by_key(server.url, "run/order-7/task/sleep-1/attempt/1/failed")["payload"]["error"] == "the engine stopped during this attempt"
    first = by_key(server.url, "run/order-7/task/sleep-1/attempt/1/started")["time_unix_nano"]
    fired = by_key(server.url, "run/order-7/task/sleep-1/attempt/2/completed")["time_unix_nano"]
    assert 9.9 <= (fired - first) / 1e9 < 20, (fired - first) / 1e9
    # The child ran as its own run, caused by the parent's step.
    ship = by_key(server.url, "run/order-7/task/ship/attempt/1/completed")["payload"]["output"]
    assert ship == "label-order-7"
    h = 0xcbf29ce484222325
    for b in b"run/order-7/task/ship":
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    child = f"sub-{h:016x}"
    assert by_key(server.url, f"run/{child}/requested")["payload"]["parent"] == "run/order-7/task/ship/attempt/1/started"
    assert by_key(server.url, f"run/{child}/task/label/attempt/1/completed")["payload"]["output"] == "label-order-7"
    assert run_state(server.url, "order-7") == "completed"
    # Running a finished run again returns its recorded output and runs nothing.
    r = run_example(example, server, "--run", "order-7", "--effects", str(effects))
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[1])["label"] == "label-order-7", r.stderr
    assert Counter(effects.read_text().split()) == after


def test_a_code_workflow_whose_step_fails_for_good_fails_the_run(server, example, tmp_path):
    effects = tmp_path / "effects"
    r = run_example(example, server, "--run", "order-8", "--effects", str(effects), "--pause", "10ms", "--fail-charge", "5")
    assert r.returncode == 2 and "run order-8 failed: step charge failed: the card was declined" in r.stderr, r.stderr
    assert Counter(effects.read_text().split()) == {"charge": 3}, "three attempts, as its retry policy says"
    failed = by_key(server.url, "run/order-8/failed")
    assert failed["payload"]["error"] == "step charge failed: the card was declined"


def test_a_code_workflow_waits_for_a_signal_shows_its_steps_and_can_be_cancelled(server, example, run_banyan, tmp_path):
    effects = tmp_path / "effects"
    proc = subprocess.Popen([str(example), "--server", server.url, "--run", "order-9", "--effects", str(effects), "--pause", "10ms", "--approval", "yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_until(lambda: by_key(server.url, "run/order-9/task/signal-approval/attempt/1/started"), 30, "the wait for approval")
    r = run_banyan("workflow", "status", "order-9", "--server", server.url)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0].startswith("run order-9  workflow order (version code)  running"), r.describe()
    assert [line.split()[0] for line in lines[2:]] == ["charge", "email", "sms", "sleep-1", "signal-approval"] or \
        [line.split()[0] for line in lines[2:]] == ["charge", "sms", "email", "sleep-1", "signal-approval"], lines
    assert lines[-1].split()[1] == "started"
    r = run_banyan("workflow", "signal", "order-9", "approval", "--payload", '"ana"', "--server", server.url)
    assert r.returncode == 0, r.describe()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "approved-by-ana" in effects.read_text().split()
    # Another run, cancelled while it waits: the program ends, the run is recorded cancelled.
    proc = subprocess.Popen([str(example), "--server", server.url, "--run", "order-10", "--effects", str(tmp_path / "effects10"), "--pause", "10ms", "--approval", "yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wait_until(lambda: by_key(server.url, "run/order-10/task/signal-approval/attempt/1/started"), 30, "the wait for approval")
    r = run_banyan("workflow", "cancel", "order-10", "--reason", "out of stock", "--server", server.url)
    assert r.returncode == 0, r.describe()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "run order-10 was cancelled: out of stock" in err, err
    assert run_state(server.url, "order-10") == "cancelled"
    assert "label" not in (tmp_path / "effects10").read_text().split(), "nothing after the cancel ran"
