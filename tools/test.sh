#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the Swift tests, then the Python
# integration tests (real `banyan serve` processes, the real celestialtree client, kill -9 crashes),
# with schemathesis checking the live server against docs/openapi.yaml first.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-debian.sh --tests
swift build --build-tests
swift test --skip-build
BANYAN_BIN="$PWD/.build/debug/banyan" tools/schemathesis.sh
BANYAN_BIN="$PWD/.build/debug/banyan" python3 -m pytest -q -p no:cacheprovider Tests/integration
