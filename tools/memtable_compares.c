/*
 * How many key comparisons one RocksDB memtable insert costs with the librocksdb this machine
 * links (docs/PERFORMANCE.md, "Replication": Debian's 7.8.3 is built with its assertions on, and
 * the skiplist asserts its splice at every level after each insert). Ascending 8-byte big-endian
 * keys, as Banyan's `log` family writes them, 150-byte values, write batches of 1,000, no WAL, a
 * memtable large enough never to flush; with and without Banyan's insert hint
 * (memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1). Prints the user-key
 * comparisons per insert from RocksDB's perf context, and the time.
 *
 *   gcc -O2 tools/memtable_compares.c -o /tmp/memtable_compares -lrocksdb
 *   /tmp/memtable_compares [BATCHES]          (default 1000 batches: 1M inserts)
 *
 * Scratch databases go to $TMPDIR (default /tmp) and are deleted afterwards.
 */
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int run(int hint, int batches) {
    char *err = NULL, path[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/memtable_compares.%d.%d", tmp ? tmp : "/tmp", (int)getpid(), hint);
    rocksdb_options_t *options = rocksdb_options_create();
    if (hint) {
        rocksdb_options_t *hinted = rocksdb_options_create();
        rocksdb_get_options_from_string(options, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1", hinted, &err);
        rocksdb_options_destroy(options);
        if (err) { fprintf(stderr, "options: %s\n", err); return 1; }
        options = hinted;
    }
    rocksdb_options_set_create_if_missing(options, 1);
    rocksdb_options_set_write_buffer_size(options, (size_t)1 << 30);
    rocksdb_t *db = rocksdb_open(options, path, &err);
    if (err) { fprintf(stderr, "open %s: %s\n", path, err); return 1; }
    rocksdb_writeoptions_t *write = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(write, 1);
    rocksdb_set_perf_level(rocksdb_enable_count);
    rocksdb_perfcontext_t *perf = rocksdb_perfcontext_create();
    rocksdb_perfcontext_reset(perf);
    char value[150];
    memset(value, 'x', sizeof value);
    unsigned long long id = 1;
    double started = now();
    for (int b = 0; b < batches; b++) {
        rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
        for (int i = 0; i < 1000; i++, id++) {
            unsigned char key[8];
            for (int j = 0; j < 8; j++) key[j] = (unsigned char)(id >> (56 - 8 * j));
            rocksdb_writebatch_put(batch, (const char *)key, sizeof key, value, sizeof value);
        }
        rocksdb_write(db, write, batch, &err);
        rocksdb_writebatch_destroy(batch);
        if (err) { fprintf(stderr, "write: %s\n", err); return 1; }
    }
    double inserts = batches * 1000.0;
    printf("hint %-3s %9.0f inserts  %.3f s  %.2f user-key comparisons per insert\n", hint ? "on" : "off", inserts,
           now() - started, rocksdb_perfcontext_metric(perf, rocksdb_user_key_comparison_count) / inserts);
    rocksdb_perfcontext_destroy(perf);
    rocksdb_writeoptions_destroy(write);
    rocksdb_close(db);
    rocksdb_destroy_db(options, path, &err);
    rocksdb_options_destroy(options);
    return 0;
}

int main(int argc, char **argv) {
    int batches = argc > 1 ? atoi(argv[1]) : 1000;
    if (batches < 1 || batches > 100000) { fprintf(stderr, "BATCHES must be 1...100000\n"); return 2; }
    return run(0, batches) || run(1, batches);
}
