#!/usr/bin/env bash
# Installs what Banyan needs on a fresh Debian 12 machine: RocksDB and zstd from Debian, and with
# --tests also what the tests need: etcd (the cluster tests), chromium and chromedriver (the
# dashboard's browser tests), iproute2 (ss, for the listening-port checks), the Python packages of
# tools/requirements.txt (grpcio-tools among them, for the gRPC tests) and the Python client.
# Swift itself (6.1 or newer) must already be on PATH.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v swift >/dev/null 2>&1; then
  echo "setup: swift is not on PATH; install a Swift 6.1+ toolchain from swift.org first" >&2
  exit 1
fi
packages=(librocksdb-dev libzstd-dev zstd)
if [ "${1:-}" = "--tests" ]; then packages+=(python3-pip etcd-server chromium chromium-driver iproute2); fi
need=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "${1:-}" = "--tests" ]; then
  python3 -m pip install -q --disable-pip-version-check -r "$(dirname "$0")/requirements.txt" 2>&1 | grep -v "Running pip as the 'root' user" || true
  # The Python client (clients/python), which Tests/integration/test_python_client.py drives.
  python3 -m pip install -q --disable-pip-version-check "$(dirname "$0")/../clients/python" 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
