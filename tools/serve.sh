#!/usr/bin/env bash
# Sets up and runs the server on the default data directory (./banyan-data), 127.0.0.1:7777.
# Extra arguments go to `banyan serve` (see `banyan serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-debian.sh
swift build -c release --product banyan
exec .build/release/banyan serve "$@"
