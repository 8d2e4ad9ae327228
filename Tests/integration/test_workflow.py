"""Workflow definitions from the CLI (docs/WORKFLOWS.md): `banyan workflow validate` accepts the
examples and refuses a bad definition at its file:line:column with a hint, exit code 1."""
from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_the_examples_validate(run_banyan, example):
    r = run_banyan("workflow", "validate", str(EXAMPLES / example))
    assert r.returncode == 0 and r.stdout.startswith("workflow validate: ok: "), r.describe()


def test_a_bad_definition_is_refused_where_it_is_wrong(run_banyan, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "nightly-build.yaml").read_text().replace("needs: [report]", "needs: [reprot]"))
    r = run_banyan("workflow", "validate", str(bad))
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and lines[0] == f'{bad}:23:13: tasks[3].needs[0]: no task has id "reprot"', r.describe()
    assert lines[1].strip() == "needs: [reprot]" and lines[2].index("^") == lines[1].index("reprot"), r.describe()
    assert 'did you mean "report"?' in r.stderr
    r = run_banyan("workflow", "validate", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1 and "cannot read" in r.stderr, r.describe()


# ---- running workflows against a real server -------------------------------------------------

import subprocess
import time

import requests

from test_v1_api import wait_until


def run_events(url: str, run: str) -> list[dict]:
    r = requests.get(url + "/v1/events", params={"stream": f"job_events:{run}", "limit": 1000}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def by_key(url: str, key: str) -> dict | None:
    r = requests.get(url + "/v1/events/by-key/" + requests.utils.quote(key, safe=""), timeout=10)
    return r.json() if r.status_code == 200 else None


def run_state(url: str, run: str) -> str:
    """How a run ended, from its run-level events, or `running`."""
    for state in ("completed", "failed", "cancelled"):
        if by_key(url, f"run/{run}/{state}") is not None:
            return state
    return "running"


def ancestors(url: str, key: str) -> list[str]:
    r = requests.post(url + "/v1/query", json={"query": f'ancestors(key "{key}")', "page_size": 1000}, timeout=10)
    assert r.status_code == 200, r.text
    return [e.get("key") for e in r.json()["results"]]


def test_a_diamond_passes_outputs_along_and_records_every_transition(server, run_banyan):
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--input", "base=5")
    assert r.returncode == 0, r.describe()
    run, outcome = r.stdout.splitlines()[:2]
    assert outcome == "completed"
    join = by_key(server.url, f"run/{run}/task/join/attempt/1/completed")
    assert join["payload"]["output"] == {"sum": 16}, join  # (5 + 1) + 5 * 2
    events = run_events(server.url, run)
    types = [e["type"] for e in events]
    assert types[:2] == ["workflow.run.requested", "workflow.run.started"] and types[-1] == "workflow.run.completed"
    assert types.count("workflow.task.completed") == 4 and types.count("workflow.task.started") == 4
    assert all(e["stream"] == f"job_events:{run}" for e in events)
    # The join's lineage reaches both branches and the split, and the run's request.
    lineage = ancestors(server.url, f"run/{run}/task/join/attempt/1/completed")
    for task in ("split", "left", "right"):
        assert f"run/{run}/task/{task}/attempt/1/completed" in lineage, lineage
    assert f"run/{run}/requested" in lineage
    # Starting the same run id again is the same run: nothing is recorded twice.
    again = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--input", "base=5", "--run", run)
    assert again.returncode == 0 and len(run_events(server.url, run)) == len(events), again.describe()


def test_status_shows_each_task_from_the_log(server, run_banyan, tmp_path):
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "etl.yaml"), "--server", server.url, "--input", "rows=0")
    assert r.returncode == 0, r.describe()
    run = r.stdout.splitlines()[0]
    r = run_banyan("workflow", "status", run, "--server", server.url)
    assert r.returncode == 0, r.describe()
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"run {run}  workflow etl (version ") and lines[0].endswith("completed"), lines
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["extract"].split()[1:3] == ["completed", "1"] and rows["extract"].rstrip().endswith("ms"), rows
    assert "skipped (its start_when does not hold" in rows["load"] and "skipped (load was skipped)" in rows["report"], rows
    assert run_banyan("workflow", "status", "nope", "--server", server.url).returncode == 1


def test_a_flaky_task_is_retried_with_backoff_and_its_success_remembers_the_failures(server, run_banyan, tmp_path):
    counter = tmp_path / "count"
    flaky = tmp_path / "flaky.yaml"
    flaky.write_text(f"""
name: flaky
tasks:
  - id: flaky
    kind: shell
    run: ["sh", "-c", "n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]"]
    retry: {{max_attempts: 3, backoff: {{initial: 200ms, multiplier: 2, max: 1s}}}}
""")
    r = run_banyan("workflow", "run", "--drive", str(flaky), "--server", server.url)
    assert r.returncode == 0, r.describe()
    run = r.stdout.splitlines()[0]
    assert counter.read_text().strip() == "3"
    key = lambda n, state: f"run/{run}/task/flaky/attempt/{n}/{state}"
    failed1, started2, failed2, started3 = (by_key(server.url, key(*k)) for k in [(1, "failed"), (2, "started"), (2, "failed"), (3, "started")])
    assert failed1["payload"]["exit_code"] == 1 and "exit code 1" in failed1["payload"]["error"]
    assert (started2["time_unix_nano"] - failed1["time_unix_nano"]) >= 200_000_000, "the first backoff was respected"
    assert (started3["time_unix_nano"] - failed2["time_unix_nano"]) >= 400_000_000, "the second backoff doubled"
    lineage = ancestors(server.url, key(3, "completed"))
    assert key(1, "failed") in lineage and key(2, "failed") in lineage and key(2, "retrying") in lineage, lineage


def test_a_failing_run_compensates_in_reverse_completion_order(server, run_banyan, tmp_path):
    log = tmp_path / "undo.log"
    saga = tmp_path / "saga.yaml"
    saga.write_text(f"""
name: saga
tasks:
  - {{id: reserve, kind: shell, run: ["true"], compensate: {{kind: shell, run: ["sh", "-c", "echo release >> {log}"]}}}}
  - {{id: charge, kind: shell, needs: [reserve], run: ["true"], compensate: {{kind: shell, run: ["sh", "-c", "echo refund >> {log}"]}}}}
  - {{id: ship, kind: shell, needs: [charge], run: ["sh", "-c", "echo no truck >&2; exit 3"]}}
""")
    r = run_banyan("workflow", "run", "--drive", str(saga), "--server", server.url)
    assert r.returncode == 1 and "failed: ship: exit code 3" in r.stdout, r.describe()
    run = r.stdout.splitlines()[0]
    assert log.read_text().split() == ["refund", "release"]
    types = [(e["type"], e["payload"].get("task")) for e in run_events(server.url, run)]
    assert types[-5:] == [("workflow.task.compensating", "charge"), ("workflow.task.compensated", "charge"),
                          ("workflow.task.compensating", "reserve"), ("workflow.task.compensated", "reserve"),
                          ("workflow.run.failed", "ship")], types
    failed = by_key(server.url, f"run/{run}/task/ship/attempt/1/failed")
    assert failed["payload"]["exit_code"] == 3 and "no truck" in failed["payload"]["stderr"]


def test_a_run_resumed_after_kill_9_runs_no_completed_task_again(server, run_banyan, banyan_bin, tmp_path):
    effects = tmp_path / "effects"
    chain = tmp_path / "chain.yaml"
    chain.write_text(f"""
name: chain
tasks:
  - {{id: first, kind: shell, run: ["sh", "-c", "echo first >> {effects}"]}}
  - {{id: slow, kind: shell, needs: [first], run: ["sh", "-c", "echo slow >> {effects}; sleep 3"], retry: {{max_attempts: 2, backoff: {{initial: 100ms}}}}}}
  - {{id: last, kind: shell, needs: [slow], run: ["sh", "-c", "echo last >> {effects}"]}}
""")
    proc = subprocess.Popen([str(banyan_bin), "workflow", "run", "--drive", str(chain), "--server", server.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    run = proc.stdout.readline().strip()
    wait_until(lambda: by_key(server.url, f"run/{run}/task/slow/attempt/1/started") is not None, 30, "the slow task to start")
    proc.kill()
    proc.wait(10)
    r = run_banyan("workflow", "resume", run, "--server", server.url, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "completed", r.describe()
    lines = effects.read_text().split()
    assert lines.count("first") == 1 and lines.count("last") == 1, lines
    stopped = by_key(server.url, f"run/{run}/task/slow/attempt/1/failed")
    assert stopped["payload"]["error"] == "the engine stopped during this attempt"
    assert by_key(server.url, f"run/{run}/task/slow/attempt/2/completed") is not None
    completed = [e["payload"]["task"] for e in run_events(server.url, run) if e["type"] == "workflow.task.completed"]
    assert sorted(completed) == ["first", "last", "slow"], completed
    # Resuming a finished run changes nothing.
    before = len(run_events(server.url, run))
    assert run_banyan("workflow", "resume", run, "--server", server.url).returncode == 0
    assert len(run_events(server.url, run)) == before


def test_bad_runs_are_refused_before_anything_is_recorded(server, run_banyan, tmp_path):
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--input", "base=many")
    assert r.returncode == 1 and "--input base: number inputs are JSON" in r.stderr, r.describe()
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--input", "colour=red")
    assert r.returncode == 1 and "no such input" in r.stderr, r.describe()
    r = run_banyan("workflow", "resume", "nope", "--server", server.url)
    assert r.returncode == 1 and "no run nope" in r.stderr, r.describe()
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--run", "a/b")
    assert r.returncode == 1 and "is not a run id" in r.stderr, r.describe()
    page = requests.get(server.url + "/v1/events", params={"after": 0}, timeout=10).json()
    assert [e["type"] for e in page["events"]] == ["genesis"], page


def test_a_run_id_reused_with_other_inputs_is_refused(server, run_banyan):
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--run", "same", "--input", "base=1")
    assert r.returncode == 0, r.describe()
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "diamond.yaml"), "--server", server.url, "--run", "same", "--input", "base=2")
    assert r.returncode == 1 and "run same exists with another definition or other inputs" in r.stderr, r.describe()


def test_a_failing_compensation_is_recorded_and_the_next_one_still_runs(server, run_banyan, tmp_path):
    log = tmp_path / "undo.log"
    saga = tmp_path / "saga.yaml"
    saga.write_text(f"""
name: stuck
tasks:
  - {{id: a, kind: shell, run: ["true"], compensate: {{kind: shell, run: ["sh", "-c", "echo undo-a >> {log}"]}}}}
  - {{id: b, kind: shell, needs: [a], run: ["true"], compensate: {{kind: shell, run: ["sh", "-c", "echo nope >&2; exit 4"], retry: {{max_attempts: 2, backoff: {{initial: 50ms}}}}}}}}
  - {{id: c, kind: shell, needs: [b], run: ["false"]}}
""")
    r = run_banyan("workflow", "run", "--drive", str(saga), "--server", server.url)
    assert r.returncode == 1, r.describe()
    run = r.stdout.splitlines()[0]
    assert log.read_text().split() == ["undo-a"]
    failed = by_key(server.url, f"run/{run}/task/b/compensation/compensation_failed")
    assert failed["type"] == "workflow.task.compensation_failed" and failed["payload"]["exit_code"] == 4 and "nope" in failed["payload"]["stderr"], failed
    assert by_key(server.url, f"run/{run}/task/a/compensation/compensated") is not None
    end = by_key(server.url, f"run/{run}/failed")
    assert end["payload"]["task"] == "c" and end["payload"]["compensations_failed"] == ["b"], end


def test_odd_output_and_a_lingering_child_do_not_break_a_run(server, run_banyan, tmp_path):
    odd = tmp_path / "odd.yaml"
    # stderr with what YAML would misread, and a background child that would hold the pipes open.
    odd.write_text('name: odd\ntasks:\n'
                   '  - {id: noisy, kind: shell, run: ["sh", "-c", "printf \'[&](int x) a, &b \\\\177\' >&2; exit 1"], on_failure: continue}\n'
                   '  - {id: linger, kind: shell, run: ["sh", "-c", "sleep 30 & echo started"]}\n')
    started = time.monotonic()
    r = run_banyan("workflow", "run", "--drive", str(odd), "--server", server.url, timeout=25)
    assert r.returncode == 0 and time.monotonic() - started < 20, r.describe()
    run = r.stdout.splitlines()[0]
    noisy = by_key(server.url, f"run/{run}/task/noisy/attempt/1/failed")
    assert "[&](int x) a, &b" in noisy["payload"]["stderr"], noisy
    assert by_key(server.url, f"run/{run}/task/linger/attempt/1/completed")["payload"]["output"] == "started"
    assert run_banyan("workflow", "resume", run, "--server", server.url).returncode == 0, "the log reads back"


def test_the_etl_example_starts_load_on_its_condition_and_skips_the_alert(server, run_banyan):
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "etl.yaml"), "--server", server.url)
    assert r.returncode == 0, r.describe()
    run = r.stdout.splitlines()[0]
    tasks = {(e["type"], e["payload"].get("task")) for e in run_events(server.url, run)}
    assert ("workflow.task.completed", "load") in tasks and ("workflow.task.completed", "report") in tasks
    assert not any(task == "alert" for _, task in tasks), "alert's condition never held"
    report = by_key(server.url, f"run/{run}/task/report/attempt/1/completed")
    assert report["payload"]["output"] == "report: loaded 3 rows into orders"
    # The load's scheduling names what satisfied its condition.
    assert f"run/{run}/task/extract/attempt/1/completed" in ancestors(server.url, f"run/{run}/task/load/attempt/1/scheduled")
    # With no rows, load can never start: it and what needs it are skipped, and the run completes.
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "etl.yaml"), "--server", server.url, "--input", "rows=0")
    assert r.returncode == 0, r.describe()
    run = r.stdout.splitlines()[0]
    assert {e["payload"].get("task") for e in run_events(server.url, run) if e["type"] == "workflow.task.completed"} == {"extract"}


def test_the_order_saga_example_compensates_what_completed(server, run_banyan, tmp_path):
    log = tmp_path / "order.log"
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "order-saga.yaml"), "--server", server.url, "--input", "fail_at=ship", "--input", f"log={log}")
    assert r.returncode == 1 and "failed: ship" in r.stdout, r.describe()
    assert log.read_text().split() == ["reserved", "charged", "refunded", "released"]
    log.unlink()
    r = run_banyan("workflow", "run", "--drive", str(EXAMPLES / "order-saga.yaml"), "--server", server.url, "--input", f"log={log}")
    assert r.returncode == 0 and log.read_text().split() == ["reserved", "charged", "shipped"], r.describe()


def test_a_task_past_its_timeout_is_killed_and_recorded(server, run_banyan, tmp_path):
    slow = tmp_path / "slow.yaml"
    slow.write_text('name: slow\ntasks:\n  - {id: nap, kind: shell, run: ["sleep", "30"], timeout: 300ms}\n')
    started = time.monotonic()
    r = run_banyan("workflow", "run", "--drive", str(slow), "--server", server.url, timeout=20)
    assert r.returncode == 1 and time.monotonic() - started < 15, r.describe()
    run = r.stdout.splitlines()[0]
    failed = by_key(server.url, f"run/{run}/task/nap/attempt/1/failed")
    assert failed["payload"]["error"].startswith("timed out after") and failed["payload"]["duration_ms"] < 5000, failed


def test_a_durable_sleep_fires_on_time_across_a_kill_9(server, run_banyan, banyan_bin, tmp_path):
    nap = tmp_path / "nap.yaml"
    nap.write_text('name: nap\ntasks:\n  - {id: wait, kind: sleep, duration: 3s}\n  - {id: after, kind: shell, needs: [wait], run: ["echo", "woke"]}\n')
    proc = subprocess.Popen([str(banyan_bin), "workflow", "run", "--drive", str(nap), "--server", server.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    run = proc.stdout.readline().strip()
    wait_until(lambda: by_key(server.url, f"run/{run}/task/wait/attempt/1/started") is not None, 30, "the timer to start")
    time.sleep(1)
    proc.kill()
    proc.wait(10)
    r = run_banyan("workflow", "resume", run, "--server", server.url, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "completed", r.describe()
    started = by_key(server.url, f"run/{run}/task/wait/attempt/1/started")
    done = by_key(server.url, f"run/{run}/task/wait/attempt/1/completed")
    waited = (done["time_unix_nano"] - started["time_unix_nano"]) / 1e9
    assert 2.9 <= waited < 4.5, f"fired {waited:.2f} s after it started: on time, not a whole sleep after the restart"
    assert by_key(server.url, f"run/{run}/task/wait/attempt/1/failed") is None, "the timer was not counted as a failed attempt"
    assert by_key(server.url, f"run/{run}/task/after/attempt/1/completed")["payload"]["output"] == "woke"
    short = tmp_path / "short.yaml"
    short.write_text('name: short\ntasks:\n  - {id: wait, kind: sleep, duration: 300ms}\n')
    r = run_banyan("workflow", "run", "--drive", str(short), "--server", server.url)
    assert r.returncode == 0, r.describe()
    run = r.stdout.splitlines()[0]
    assert by_key(server.url, f"run/{run}/task/wait/attempt/1/completed")["payload"]["output"] == {"slept_ms": 300}


def test_concurrency_bounds_the_tasks_of_a_run_running_at_once(server, run_banyan, tmp_path):
    flow = tmp_path / "one.yaml"
    flow.write_text("name: one\nconcurrency: 1\ntasks:\n" + "".join(f'  - {{id: t{i}, kind: shell, run: ["sleep", "0.2"]}}\n' for i in range(3)))
    r = run_banyan("workflow", "run", "--drive", str(flow), "--server", server.url)
    assert r.returncode == 0, r.describe()
    run = r.stdout.splitlines()[0]
    spans = sorted((by_key(server.url, f"run/{run}/task/t{i}/attempt/1/started")["time_unix_nano"],
                    by_key(server.url, f"run/{run}/task/t{i}/attempt/1/completed")["time_unix_nano"]) for i in range(3))
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2)), f"one at a time: {spans}"


def test_progress_lines_become_progress_events_and_stay_out_of_the_output(server, run_banyan, tmp_path):
    flow = tmp_path / "progress.yaml"
    script = tmp_path / "load.sh"
    script.write_text('for p in 25 50 75; do echo "::progress {\\"pct\\": $p}"; done\necho "::progress almost"\necho \'{"rows": 3}\'\n')
    flow.write_text(f'name: progress\ntasks:\n  - {{id: load, kind: shell, run: ["sh", "{script}"], output: json}}\n')
    r = run_banyan("workflow", "run", "--drive", str(flow), "--server", server.url)
    assert r.returncode == 0, r.describe()
    run = r.stdout.splitlines()[0]
    events = run_events(server.url, run)
    progress = [e for e in events if e["type"] == "workflow.task.progress"]
    assert [e["payload"]["progress"] for e in progress] == [{"pct": 25}, {"pct": 50}, {"pct": 75}, "almost"]
    assert [e["key"] for e in progress] == [f"run/{run}/task/load/attempt/1/progress/{k}" for k in range(1, 5)]
    started = by_key(server.url, f"run/{run}/task/load/attempt/1/started")
    assert all(e["parents"] == [started["id"]] for e in progress)
    completed = by_key(server.url, f"run/{run}/task/load/attempt/1/completed")
    assert completed["payload"]["output"] == {"rows": 3} and completed["id"] > progress[-1]["id"], "reports come before the outcome; the output is clean"


def test_a_program_not_on_path_fails_its_attempt_saying_so(server, run_banyan, tmp_path):
    flow = tmp_path / "missing.yaml"
    flow.write_text('name: missing\ntasks:\n  - {id: go, kind: shell, run: ["no-such-program-banyan", "x"]}\n')
    r = run_banyan("workflow", "run", "--drive", str(flow), "--server", server.url)
    assert r.returncode == 1 and r.stdout.splitlines()[-1] == "failed: go: no-such-program-banyan: no such program on PATH", r.describe()
