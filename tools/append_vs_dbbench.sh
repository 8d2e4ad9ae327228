#!/usr/bin/env bash
# Embedded append against RocksDB's own db_bench in one run (the benchmarks issue's target:
# Banyan's embedded append >= 70% of db_bench fillseq writing the same number of keys per event).
#
#   tools/append_vs_dbbench.sh            # about 3 minutes after the Benchmarks build
#
# Banyan (format 2) writes one `log` key per unkeyed event plus one `index` block and one `stats`
# key per commit group, so the comparison is fillseq with one key per event, values of the size of
# the benchmark's records (about 220 bytes), 500,000 keys in batches of 1,000, with and without
# sync per batch, from an empty database, rate = keys / total time. Both sides run with the `log`
# family's options: LZ4 on flush, the memtable insert hint. Banyan's side is the Benchmarks
# package's Append.fillseq.group (fsync per commit group) and Append.fillseq.never: the same
# shape (an empty store, 500,000 events in client batches of 1,000, events / total time).
# db_bench runs before and after Banyan; both of its figures are printed, since the machine drifts.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v db_bench >/dev/null; then
    apt-get install -y rocksdb-tools >/dev/null
fi
work=$(mktemp -d /tmp/banyan-dbbench-XXXXXX)
trap 'rm -rf "$work"' EXIT
dbbench() {
    for sync in 1 0; do
        rm -rf "$work/db-$sync"
        line=$(db_bench --benchmarks=fillseq --num=500000 --batch_size=1000 --value_size=220 --key_size=8 \
            --sync=$sync --compression_type=lz4 --memtable_insert_with_hint_prefix_size=1 \
            --db="$work/db-$sync" --threads=1 2>/dev/null | grep '^fillseq')
        echo "db_bench fillseq, batch 1000, sync=$sync ($1): $line"
    done
}
dbbench before
(cd Benchmarks && swift package benchmark --filter 'Append\.fillseq\..*' --grouping metric 2>&1 | grep -E "fillseq.*\(K\)")
dbbench after
