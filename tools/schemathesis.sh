#!/usr/bin/env bash
# Checks the live server against docs/openapi.yaml with schemathesis (property-based API testing).
#
# Starts its own `banyan serve` on a free loopback port with a temporary data directory, seeds a
# few events so the read routes have data, runs schemathesis (checks: not_a_server_error,
# status_code_conformance, content_type_conformance, response_schema_conformance,
# response_headers_conformance), then a few deterministic contract probes that fuzzing cannot
# reach (body limits, auth on a second server with tokens, SSE framing, --streams-max, query
# decoding, metric labels, far-off time bounds). Stops every server it started and exits
# non-zero on any failure, including a server that died. Needs nothing beyond loopback and PyPI.
#
#   BANYAN_BIN                 binary to run (default: <repo>/.build/debug/banyan; not built here)
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 100: about a minute
#                              on 2 cores; raise it for a deeper run)
#   SCHEMATHESIS_SEED          hypothesis seed (default: random; always printed, rerun with it
#                              to reproduce a run)
#   SCHEMATHESIS_WORKERS       concurrent schemathesis workers (default 1: Python 3.11's ast.parse,
#                              which hypothesis calls, is not thread-safe, so 2 workers can error out)
#   SCHEMATHESIS_VENV          where schemathesis is installed (default:
#                              ~/.cache/banyan/schemathesis-<version>; created on first use)
#   SCHEMATHESIS_SPEC          the spec to check (default: <repo>/docs/openapi.yaml)
#   SCHEMATHESIS_KEEP=1        keep the temporary directory (server logs, data dirs)
# Extra arguments go to `schemathesis run`, e.g. `--include-path /emit` or `--phases fuzzing`.
#
# The SSE routes (/v1/stream, /subscribe, /v1/runs/{id}/watch) are in the spec but not fuzzed (their streams never
# end); the probes read their first frames instead. /v1/replication/groups is a long poll (up to
# 30 s per request) and its binary body has no schema to check; Tests/integration/test_replication.py
# drives it with real followers and bad input. The deprecated GET /emit, /descendants and
# /provenance operations only document the 405 answer, so schemathesis warns that they "mostly
# rejected generated data": expected.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
SPEC="${SCHEMATHESIS_SPEC:-$REPO/docs/openapi.yaml}"
ST_VERSION="4.32.5"
BANYAN_BIN="${BANYAN_BIN:-$REPO/.build/debug/banyan}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
WORKERS="${SCHEMATHESIS_WORKERS:-1}"
SEED="${SCHEMATHESIS_SEED:-$(python3 -c 'import random; print(random.randrange(1, 2**31))')}"
VENV="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/banyan/schemathesis-$ST_VERSION}"

say() { echo "schemathesis.sh: $*" >&2; }

if [ ! -x "$BANYAN_BIN" ]; then
  say "no banyan binary at $BANYAN_BIN (build it with 'swift build' or set BANYAN_BIN)"
  exit 2
fi

# --- schemathesis, pinned, in its own virtualenv (the system's hypothesis/requests stay untouched)
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $ST_VERSION"; then
  say "installing schemathesis $ST_VERSION into $VENV"
  if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
      # Debian's python3 lacks ensurepip until python3-venv is installed.
      SUDO=""
      if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv --clear "$VENV"
    fi
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

# --- servers of our own
WORK="$(mktemp -d "${TMPDIR:-/tmp}/banyan-schemathesis.XXXXXX")"
PIDS=()
stop() {  # stop <pid>: SIGTERM, then SIGKILL after 10 s
  local pid="$1"
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
log_excerpt() {  # log_excerpt <log>: the crash or error lines and the last lines
  say "server log $1: errors and last lines"
  grep -E "Fatal error|crashed|unhandled error" "$1" | head -n 10 >&2 || true
  tail -n 8 "$1" >&2 || true
}
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do stop "$pid"; done
  if [ "$rc" -eq 0 ] && [ "${SCHEMATHESIS_KEEP:-0}" != "1" ]; then rm -rf "$WORK"; else say "kept $WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits for /healthz, then (with --seed) appends a diamond (so trees have reference nodes), keys
# (one with a slash), a stream, payloads (one with an integer past 2^63), NDJSON and /emit events.
cat >"$WORK/seed.py" <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
deadline = time.time() + 30
while True:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            if r.status == 200:
                break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit(f"schemathesis.sh: {base} did not answer /healthz within 30 s")
    time.sleep(0.1)
if "--seed" not in sys.argv:
    sys.exit(0)

def post(path, body, content_type="application/json"):
    req = urllib.request.Request(base + path, data=body.encode(), method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())

batch = [
    {"type": "seed.root", "key": "seed-a", "stream": "seed", "message": "root", "payload": {"n": 1, "big": 12345678901234567890}},
    {"type": "seed.left", "parent_keys": ["seed-a"], "key": "seed-b", "stream": "seed"},
    {"type": "seed.right", "parent_keys": ["seed-a"], "key": "seed/c", "payload": [1, "two", None]},
    {"type": "seed.join", "parent_keys": ["seed-b", "seed/c"], "stream": "seed", "message": "diamond"},
]
ids = [r["id"] for r in post("/v1/events", json.dumps(batch))["results"]]
post("/v1/events", '{"type":"seed.nd","parents":[%d]}\n{"type":"seed.nd2","key":"seed-nd"}\n' % ids[-1], "application/x-ndjson")
post("/emit", json.dumps({"type": "seed.emit", "parents": [ids[-1], 1], "payload": "x"}))
if "--workflows" in sys.argv:
    # A workflow and a run of it, so the workflow routes have something to show.
    post("/v1/workflows", "name: seeded\ntasks:\n  - {id: t, kind: swift, function: noop}\n", "application/yaml")
    post("/v1/workflows/seeded/runs", json.dumps({"run": "seeded-run"}))
print(f"schemathesis.sh: {base}: seeded events 2..{ids[-1] + 3}", file=sys.stderr)
PY

# start_server <name> [--seed] [serve args...]: a server on a free port with data dir $WORK/<name>;
# sets SERVER_PID and SERVER_BASE. Callers set BANYAN_TOKENS explicitly (empty: no auth).
start_server() {
  local name="$1" seed=""
  shift
  if [ "${1:-}" = "--seed" ]; then seed="--seed"; shift; fi
  local port
  port="$(free_port)"
  "$BANYAN_BIN" serve --data-dir "$WORK/$name" --host 127.0.0.1 --port "$port" --grpc-port 0 "$@" >"$WORK/$name.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_BASE="http://127.0.0.1:$port"
  python3 "$WORK/seed.py" "$SERVER_BASE" $seed "$@" || { log_excerpt "$WORK/$name.log"; exit 1; }
}

# A 64 KiB body limit (default 64 MiB) keeps the 413 probe cheap; fuzzed bodies stay far below it.
# A read naming an id past the end (min_id) waits --read-wait-ms, and a write asking for replicas
# (there are no followers here) waits --replica-timeout-ms: both as short as allowed, so fuzzing
# gets their 503 and 504 at once instead of sleeping through thousands of cases.
# --workflows adds the workflow API (its engine runs the seeded run).
MAIN_ARGS=(--seed --body-bytes-max 65536 --read-wait-ms 0 --replica-timeout-ms 1 --workflows)
BANYAN_TOKENS="" start_server main "${MAIN_ARGS[@]}"
MAIN_PID="$SERVER_PID"
MAIN_LOG="$WORK/main.log"
BASE="$SERVER_BASE"

# schemathesis hooks: NDJSON bodies for POST /v1/events (mostly valid events, some bad lines);
# the spec can only say `type: string` for them.
cat >"$WORK/banyan_st_hooks.py" <<'PY'
import json

import schemathesis
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
event = st.fixed_dictionaries(
    {"type": st.text(min_size=1, max_size=12)},
    optional={
        "parents": st.lists(st.integers(0, 8) | st.integers(0, 2**64 - 1), max_size=3),
        "parent_keys": st.lists(st.sampled_from(["seed-a", "seed-b", "nope"]) | st.text(max_size=6), max_size=2),
        "key": st.text(min_size=1, max_size=8),
        "stream": st.text(min_size=1, max_size=8),
        "message": st.text(max_size=12),
        "payload": json_values,
    },
)
line = event.map(json.dumps) | st.sampled_from(["", "   ", "not json", "[1]", "{}", '{"type":"x","bogus":1}', '{"type":""}'])
ndjson = st.lists(line, max_size=5).map(lambda lines: ("\n".join(lines) + "\n").encode())
schemathesis.openapi.media_type("application/x-ndjson", ndjson)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx, value):
    # Strategy output is bytes; values from the spec's `type: string` (coverage phase) are str.
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


# Workflow definitions: a few valid ones (swift noop tasks only: nothing a fuzzer uploads runs a
# program), near misses, and any text.
definition = st.sampled_from([
    "name: fuzz\ntasks:\n  - {id: t, kind: swift, function: noop}\n",
    "name: fuzz2\ninputs: {n: {type: number, default: 1}}\ntasks:\n  - {id: a, kind: swift, function: noop}\n  - {id: b, kind: sleep, duration: 1ms, needs: [a]}\n",
    "name: fuzz\ntasks: []\n", "name: x\ntasks:\n  - {id: a}\n", "tasks: 3", ":", "",
]) | st.text(max_size=40)
schemathesis.openapi.media_type("application/yaml", definition.map(lambda t: t.encode()))


@schemathesis.serializer("application/yaml")
def _yaml(ctx, value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
PY

cat >"$WORK/probes.py" <<'PY'
# Deterministic checks of documented answers that fuzzing does not reach, each validated against
# the spec with the same schemathesis checks as the fuzz run (status code, content type, body
# schema, headers, no 5xx) plus the status the docs promise.
import json
import os
import sys
import time

import jsonschema_rs
import requests
import schemathesis
import yaml
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

BASE, AUTH = os.environ["BASE"], os.environ["AUTH_BASE"]
SPEC = os.environ["SPEC"]
schema = schemathesis.openapi.from_path(SPEC)
raw = yaml.safe_load(open(SPEC))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]
passed, failed = 0, 0


def result(name, problem):
    global passed, failed
    if problem:
        failed += 1
        print(f"probe FAIL {name}: {problem}")
    else:
        passed += 1
        print(f"probe ok   {name}")


def probe(name, path, method, expect, base=BASE, token=None, checks=CHECKS, **case_kwargs):
    '''One request built from the spec's operation, checked like a fuzzed one plus the expected status.'''
    try:
        case = schema[path][method].Case(**case_kwargs)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        response = case.call(base_url=base, headers=headers, timeout=30)
    except Exception as e:  # connection refused / reset: the server died or dropped the request
        return result(name, f"no response ({type(e).__name__}: {e})\n    reproduce: {case.as_curl_command(base_url=base)[:300]}")
    problem = None
    expect = expect if isinstance(expect, tuple) else (expect,)
    if response.status_code not in expect:
        problem = f"status {response.status_code}, expected {expect}: {response.text[:300]!r}"
    else:
        try:
            case.validate_response(response, checks=checks)
        except BaseException as e:  # schemathesis raises a FailureGroup (an exception group)
            problem = str(e)[:1500]
    if problem:
        curl = case.as_curl_command(headers=headers, base_url=base)
        problem += "\n    reproduce: " + (curl if len(curl) < 600 else curl[:300] + " ... (body elided)")
    result(name, problem)


def validator(name):
    return jsonschema_rs.Draft4Validator({"$ref": f"#/components/schemas/{name}", "components": raw["components"]})


def raw_probe(name, url, expect, schema_name="Error"):
    '''A GET whose URL cannot be built from the spec (e.g. bytes that are not UTF-8 once decoded).'''
    try:
        r = requests.get(url, timeout=30)
    except Exception as e:
        return result(name, f"no response ({type(e).__name__}: {e})\n    reproduce: curl -sS '{url}'")
    problem = None
    if r.status_code != expect:
        problem = f"status {r.status_code}, expected {expect}: {r.text[:300]!r}"
    elif not r.headers.get("content-type", "").startswith("application/json"):
        problem = f"content type {r.headers.get('content-type')!r}"
    else:
        errors = [e.message for e in validator(schema_name).iter_errors(r.json())]
        problem = "; ".join(errors) or None
    result(name, problem and problem + f"\n    reproduce: curl -sS '{url}'")


def sse(name, url, headers, want_hello, want_event_name, want_id):
    '''Reads the first frames of a stream (they never end), checks framing and that data is an Event.'''
    try:
        with requests.get(url, headers=headers, stream=True, timeout=10) as r:
            if r.status_code != 200 or not r.headers.get("content-type", "").startswith("text/event-stream"):
                return result(name, f"status {r.status_code} {r.headers.get('content-type')}: {r.text[:200]!r}")
            buf, deadline = "", time.time() + 10
            want = 2 if want_hello else 1
            for chunk in r.iter_content(chunk_size=None, decode_unicode=True):
                buf += chunk
                if buf.count("\n\n") >= want or time.time() > deadline:
                    break
    except Exception as e:
        return result(name, f"no stream ({type(e).__name__}: {e})")
    frames = [f for f in buf.split("\n\n") if f.strip()]
    if want_hello:
        if not frames or frames[0] != 'event: hello\ndata: {"message":"subscribed"}':
            return result(name, f"first frame is not the hello frame: {frames[:1]!r}")
        frames = frames[1:]
    if not frames:
        return result(name, f"no event frame in {buf!r}")
    lines = dict(line.split(": ", 1) for line in frames[0].split("\n"))
    if lines.get("id") != str(want_id) or lines.get("event") != want_event_name:
        return result(name, f"frame {frames[0]!r}: want id {want_id}, event {want_event_name}")
    errors = [e.message for e in validator("Event").iter_errors(json.loads(lines["data"]))]
    result(name, "; ".join(errors) if errors else None)


JSON = "application/json"
# Body limits: 413, not a 5xx (the server runs with --body-bytes-max 65536; the CelestialTree
# routes cap bodies at ~2 MiB + 64 KiB).
probe("POST /v1/events over --body-bytes-max -> 413", "/v1/events", "POST", 413,
      body=[{"type": "big", "message": "x" * 70_000}], media_type=JSON)
probe("POST /emit over the emit body limit -> 413", "/emit", "POST", 413,
      body={"type": "big", "message": "x" * 2_300_000}, media_type=JSON)
probe("POST /descendants over the body limit -> 413", "/descendants", "POST", 413,
      body={"ids": [1] * 1000, "view": "x" * 2_300_000}, media_type=JSON)
probe("POST /v1/events batch over --batch-events-max -> 413", "/v1/events", "POST", 413,
      body=[{"type": "b"}] * 10_001, media_type=JSON, query={"durability": "async"})
# A query value that is not UTF-8 once percent-decoded is an error, not a silently dropped filter
# (which would answer the whole log).
raw_probe("GET /v1/events?stream=<not UTF-8> -> 400", BASE + "/v1/events?stream=seed%FF", 400)
# /metrics labels requests by route pattern; a raw path in a label lets clients grow the series
# set without bound.
requests.get(BASE + "/event/not-an-id-probe", timeout=10)
requests.get(BASE + "/children/not-an-id-probe", timeout=10)
metrics = requests.get(BASE + "/metrics", timeout=10).text
leaked = sorted({line.split("{", 1)[1].split(",", 1)[0] for line in metrics.splitlines() if "not-an-id-probe" in line})
result("/metrics route labels are patterns, not raw paths",
       leaked and f"raw paths became labels: {', '.join(leaked)}\n    reproduce: curl -s {BASE}/event/not-an-id-probe; curl -s {BASE}/metrics | grep not-an-id")
# Auth (second server, tokens st-read:read and st-write:write).
probe("no token -> 401 + WWW-Authenticate", "/roots", "GET", 401, base=AUTH)
probe("unknown token -> 401", "/v1/status", "GET", 401, base=AUTH, token="nope")
probe("read token on POST /emit -> 403", "/emit", "POST", 403, base=AUTH, token="st-read", body={"type": "t"}, media_type=JSON)
probe("read token on POST /v1/events -> 403", "/v1/events", "POST", 403, base=AUTH, token="st-read", body=[{"type": "t"}], media_type=JSON)
probe("read token on POST /provenance -> 200", "/provenance", "POST", 200, base=AUTH, token="st-read", body={"ids": [1]}, media_type=JSON)
probe("write token on POST /emit -> 200", "/emit", "POST", 200, base=AUTH, token="st-write", body={"type": "t", "parents": [1]}, media_type=JSON)
probe("/healthz needs no token -> 200", "/healthz", "GET", 200, base=AUTH)
# SSE: framing and event JSON of the first frames.
sse("GET /v1/stream?after=1 frames", BASE + "/v1/stream?after=1", None, False, "event", 2)
sse("GET /subscribe with Last-Event-ID frames", BASE + "/subscribe", {"Last-Event-ID": "1"}, True, "emit", 2)
probe("GET /v1/stream?after=x -> 400", "/v1/stream", "GET", 400, query={"after": "x"})
# --streams-max 1 on the second server: hold one stream open, the next one is refused.
held = requests.get(AUTH + "/subscribe", headers={"Authorization": "Bearer st-read"}, stream=True, timeout=10)
probe("a stream past --streams-max -> 503 + Retry-After", "/v1/stream", "GET", 503, base=AUTH, token="st-read",
      checks=CHECKS[1:])  # a documented 503, not a server error
held.close()
# A time bound far from 1970 (valid RFC 3339, beyond Int64 nanoseconds): last, it has crashed the server.
probe("GET /v1/events?since=year 9999 -> 200 or 400, not a crash", "/v1/events", "GET", (200, 400), query={"since": "9999-12-31T23:59:59Z"})
print(f"probes: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY

say "server $BASE (pid $MAIN_PID), seed $SEED, max examples $MAX_EXAMPLES"
say "reproduce: SCHEMATHESIS_SEED=$SEED SCHEMATHESIS_MAX_EXAMPLES=$MAX_EXAMPLES tools/schemathesis.sh $*"
status=0
(
  cd "$WORK"
  # 503 (not yet applied, overloaded, not the leader) and 504 (replication timeout) are answers
  # the spec documents, with their bodies checked like any other; every other 5xx is a failure.
  cat >schemathesis.toml <<'TOML'
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503", "504"]
TOML
  PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=banyan_st_hooks \
    "$VENV/bin/schemathesis" --config-file schemathesis.toml run "$SPEC" \
      --url "$BASE" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
      --exclude-path /v1/stream --exclude-path /subscribe --exclude-path /v1/replication/groups --exclude-path '/v1/runs/{id}/watch' \
      --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
      --workers "$WORKERS" \
      --request-timeout 30 \
      --generation-database none \
      --no-color \
      "$@"
) || status=$?
say "schemathesis exit status $status (seed $SEED)"

if ! kill -0 "$MAIN_PID" 2>/dev/null; then
  say "FAIL: the server died during the schemathesis run"
  log_excerpt "$MAIN_LOG"
  status=1
  say "starting a fresh server for the probes"
  BANYAN_TOKENS="" start_server main-after-crash "${MAIN_ARGS[@]}"
  MAIN_PID="$SERVER_PID"
  MAIN_LOG="$WORK/main-after-crash.log"
  BASE="$SERVER_BASE"
fi

# --- contract probes; the second server has tokens (auth on) and room for one stream only
say "contract probes (body limits, query decoding, metric labels, auth, SSE, --streams-max, time bounds)"
BANYAN_TOKENS="st-read:read,st-write:write" start_server auth --streams-max 1
AUTH_BASE="$SERVER_BASE"
probe_status=0
BASE="$BASE" AUTH_BASE="$AUTH_BASE" SPEC="$SPEC" "$VENV/bin/python" "$WORK/probes.py" || probe_status=$?
if [ "$probe_status" -ne 0 ]; then status=1; fi
if ! kill -0 "$MAIN_PID" 2>/dev/null; then
  say "FAIL: the server died during the probes"
  log_excerpt "$MAIN_LOG"
  status=1
fi
if [ "$status" -eq 0 ]; then say "PASS (seed $SEED)"; else say "FAIL (seed $SEED)"; fi
exit "$status"
