#!/usr/bin/env bash
# Runs the deterministic replication simulation (Tests/BanyanServerTests/ReplicationSimulationTests.swift)
# for longer than CI does: many random seeds, many steps each. Every seed is printed; a failing
# seed prints the last steps it took and replays exactly with BANYAN_SIM_SEEDS=<seed>.
#
#   tools/replication_sim.sh [SEEDS] [STEPS]
#     SEEDS  a comma-separated list, or random:N (default random:50)
#     STEPS  steps per seed (default 5000)
#
# Builds the tests in debug first (swift build --build-tests). Exit status: swift test's.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-random:50}"
STEPS="${2:-5000}"
swift build --build-tests >/dev/null
BANYAN_SIM_SEEDS="$SEEDS" BANYAN_SIM_STEPS="$STEPS" \
  swift test --skip-build --filter ReplicationSimulationTests 2>&1 | grep -E "ReplicationSimulation|✘|✔ Test run|Caught|^  [0-9]+:"
exit "${PIPESTATUS[0]}"
