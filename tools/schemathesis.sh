#!/usr/bin/env bash
# Checks the live server against docs/openapi.yaml with schemathesis (property-based API fuzzing).
#
# Starts its own `banyan serve` on a free loopback port with a temporary data directory, seeds a
# few events so the read routes have data, runs schemathesis, stops the server and exits non-zero
# on any failure (a 5xx, a status code / content type / body / header that the spec does not
# allow, or a server that died during the run). Needs nothing beyond loopback and PyPI.
#
#   BANYAN_BIN                 binary to run (default: <repo>/.build/debug/banyan; not built here)
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 25: about 1-2 minutes
#                              on 2 cores)
#   SCHEMATHESIS_SEED          hypothesis seed (default: random; always printed, rerun with it
#                              to reproduce a run)
#   SCHEMATHESIS_WORKERS       concurrent schemathesis workers (default 2)
#   SCHEMATHESIS_VENV          where schemathesis is installed (default:
#                              ~/.cache/banyan/schemathesis-<version>; created on first use)
#   SCHEMATHESIS_KEEP=1        keep the temporary directory (server log, data dir)
# Extra arguments are passed to `schemathesis run`, e.g. `--include-path /emit` or `--phases fuzzing`.
#
# The SSE routes (/v1/stream, /subscribe) are in the spec but not fuzzed: their streams never end.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
SPEC="$REPO/docs/openapi.yaml"
ST_VERSION="4.32.5"
BANYAN_BIN="${BANYAN_BIN:-$REPO/.build/debug/banyan}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
WORKERS="${SCHEMATHESIS_WORKERS:-2}"
SEED="${SCHEMATHESIS_SEED:-$(python3 -c 'import random; print(random.randrange(1, 2**31))')}"
VENV="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/banyan/schemathesis-$ST_VERSION}"

say() { echo "schemathesis.sh: $*" >&2; }

if [ ! -x "$BANYAN_BIN" ]; then
  say "no banyan binary at $BANYAN_BIN (build it with 'swift build' or set BANYAN_BIN)"
  exit 2
fi

# --- schemathesis, pinned, in its own virtualenv (keeps the system's hypothesis/requests untouched)
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $ST_VERSION"; then
  say "installing schemathesis $ST_VERSION into $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

# --- a server of our own
WORK="$(mktemp -d "${TMPDIR:-/tmp}/banyan-schemathesis.XXXXXX")"
SERVER_PID=""
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -f "$WORK/server.log" ]; then
    say "last lines of the server log ($WORK/server.log):"
    tail -n 40 "$WORK/server.log" >&2 || true
  fi
  if [ "$rc" -eq 0 ] && [ "${SCHEMATHESIS_KEEP:-0}" != "1" ]; then rm -rf "$WORK"; else say "kept $WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
env -u BANYAN_TOKENS "$BANYAN_BIN" serve --data-dir "$WORK/data" --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

# Wait for /healthz, then seed: a diamond (so trees have reference nodes), keys, a stream, payloads.
BASE="$BASE" python3 - <<'PY'
import json, os, sys, time, urllib.request
base = os.environ["BASE"]
deadline = time.time() + 30
while True:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            if r.status == 200:
                break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("schemathesis.sh: the server did not answer /healthz within 30 s")
    time.sleep(0.1)

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
print("schemathesis.sh: seeded events 2..%d" % (ids[-1] + 3), file=sys.stderr)
PY

# Custom media type: NDJSON bodies for POST /v1/events, mostly valid events, some garbage lines.
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
PY

say "server $BASE (pid $SERVER_PID, data $WORK/data), seed $SEED, max examples $MAX_EXAMPLES"
say "reproduce: SCHEMATHESIS_SEED=$SEED SCHEMATHESIS_MAX_EXAMPLES=$MAX_EXAMPLES tools/schemathesis.sh $*"
status=0
(
  cd "$WORK"
  PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=banyan_st_hooks \
    "$VENV/bin/schemathesis" run "$SPEC" \
      --url "$BASE" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
      --exclude-path /v1/stream --exclude-path /subscribe \
      --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
      --workers "$WORKERS" \
      --request-timeout 30 \
      --generation-database none \
      --no-color \
      "$@"
) || status=$?

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  say "FAIL: the server died during the run (see its log below)"
  status=1
fi
say "seed $SEED: schemathesis exit status $status"
exit "$status"
