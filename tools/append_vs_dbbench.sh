#!/usr/bin/env bash
# Embedded append against RocksDB's own db_bench in one run (the benchmarks issue's target:
# Banyan's embedded append >= 70% of db_bench fillseq writing the same number of keys per event).
#
#   tools/append_vs_dbbench.sh            # about 4 minutes after the Benchmarks build
#
# Banyan (format 2) writes one `log` key per unkeyed event plus one `index` block and one `stats`
# key per commit group, so the comparison is fillseq with one key per event, values of the size of
# the benchmark's records (about 220 bytes), batches of 1,000 keys, with and without sync per
# batch, zstd like the `log` family. Banyan's side is the Benchmarks package's Append.b1000.group
# (fsync per commit group) and Append.b1000.never.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v db_bench >/dev/null; then
    apt-get install -y rocksdb-tools >/dev/null
fi
work=$(mktemp -d /tmp/banyan-dbbench-XXXXXX)
trap 'rm -rf "$work"' EXIT
for sync in 1 0; do
    line=$(db_bench --benchmarks=fillseq --num=500000 --batch_size=1000 --value_size=220 --key_size=8 \
        --sync=$sync --compression_type=zstd --db="$work/db-$sync" --threads=1 2>/dev/null | grep '^fillseq')
    echo "db_bench fillseq, batch 1000, sync=$sync: $line"
done
cd Benchmarks
swift package benchmark --filter 'Append\.b1000\.(group|never)' --grouping metric 2>&1 | grep -E -A8 "Events per second|events/s" | head -40
