import CRocksDB
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One open RocksDB database with its column families.
///
/// Thread-safety: RocksDB's `DB` is safe for concurrent reads and writes, so `get`, `write` and
/// `iterator` may be called from any thread. `@unchecked Sendable` rests on one rule: the handles
/// change only in `close()`, which the owner (`EventStore.close`, guarded to run once) calls
/// after every other user has stopped: the writer thread has exited and the server has stopped
/// serving. Between `init` and that point the pointers are immutable and the C library
/// synchronises what lies behind them.
final class RocksDB: @unchecked Sendable {
    /// How a column family is tuned. The big families get LZ4 then zstd; point-lookup families a bloom filter.
    struct FamilyOptions: Sendable {
        /// `lz4ThenZstd`: LZ4 for memtable flushes and upper levels, zstd for the last level,
        /// where most of the data ends up. zstd on every flush took 11% of the server's CPU
        /// during batched ingest; this way a byte is zstd-compressed once, on its way to the last level.
        enum Compression: Sendable { case none, lz4, lz4ThenZstd }
        var name: String
        var compression: Compression
        var bloomFilter: Bool
        /// Keys often arrive in ascending order: each memtable insert starts from where the
        /// previous one with the same first byte ended, instead of searching the skiplist from
        /// the top. Always so for ids (the log family); often for client keys (sequence numbers,
        /// time-ordered job ids), and a key that does not follow costs about a search from the top.
        /// Such a family must never take a range delete: RocksDB 7.8 shares the hints with the
        /// range-deletion memtable (facebook/rocksdb#5118, fixed in 9.2) and corrupts it.
        var insertHint = false
        /// A bloom filter over the memtable's whole keys as well as the files', for point lookups
        /// that mostly miss. Each insert pays for it, so it is on only while such lookups come
        /// (`setMemtableFilter`, which takes effect from the next memtable).
        var memtableFilter = false
    }

    /// How RocksDB replays its write-ahead log at open (its `WALRecoveryMode`). `WALScanner` has
    /// looked at the log first and decided which one applies (see `EventStore.checkWAL`).
    enum WALRecovery: Int32, Sendable {
        /// Drop only an incomplete record at the end of a log (a write cut short by a crash);
        /// refuse to open on any other damage.
        case tolerateIncompleteTail = 0
        /// Stop at the first damaged record and keep everything before it, dropping the rest:
        /// only when the operator has accepted that loss, or to look at the intact prefix.
        case pointInTime = 2
    }

    /// A column family handle. Valid while its `RocksDB` is open.
    struct Family: @unchecked Sendable {
        let handle: OpaquePointer
    }

    private var db: OpaquePointer?
    private(set) var families: [Family] = []
    private let options: OpaquePointer
    private var familyOptions: [OpaquePointer] = []
    private let cache: OpaquePointer
    private let syncWrite: OpaquePointer
    private let asyncWrite: OpaquePointer
    private let readOptions: OpaquePointer
    let path: String
    let readOnly: Bool

    /// Opens (creating if needed, unless `readOnly`) the database at `path` with exactly `families`
    /// (the "default" family is added implicitly and unused).
    init(
        path: String, families specs: [FamilyOptions], readOnly: Bool, blockCacheBytes: Int, filesMax: Int = -1,
        walRecovery: WALRecovery = .tolerateIncompleteTail
    ) throws(StorageError) {
        self.path = path
        self.readOnly = readOnly
        // Not in the C API. The MANIFEST records each closed WAL and its synced size, so an open
        // refuses a missing or shortened older log instead of skipping what it held. Read-only
        // opens too: without it, RocksDB 7.8's read-only open of a MANIFEST that tracks WALs (a
        // store being written, a checkpoint) fails an assertion and aborts the process. A
        // read-only open beside a running server can then lose a race with its log deletions,
        // which `openReadOnly` retries.
        let base = try Self.allocated(rocksdb_options_create(), "options")
        options = try Self.applying("track_and_verify_wals_in_manifest=true", to: base)
        rocksdb_options_set_wal_recovery_mode(options, walRecovery.rawValue)
        rocksdb_options_set_max_open_files(options, Int32(clamping: filesMax))
        rocksdb_options_set_create_if_missing(options, readOnly ? 0 : 1)
        rocksdb_options_set_create_missing_column_families(options, readOnly ? 0 : 1)
        rocksdb_options_increase_parallelism(options, 2)
        rocksdb_options_set_max_background_jobs(options, 2)
        rocksdb_options_set_keep_log_file_num(options, 5)
        rocksdb_options_set_bytes_per_sync(options, 1 << 20)
        rocksdb_options_set_paranoid_checks(options, 1)
        // Records carry their own checksums; RocksDB's block checksums guard the SST files.
        cache = rocksdb_cache_create_lru(blockCacheBytes)

        syncWrite = rocksdb_writeoptions_create()
        rocksdb_writeoptions_set_sync(syncWrite, 1)
        asyncWrite = rocksdb_writeoptions_create()
        rocksdb_writeoptions_set_sync(asyncWrite, 0)
        readOptions = rocksdb_readoptions_create()

        let all = [FamilyOptions(name: "default", compression: .none, bloomFilter: false)] + specs
        for spec in all {
            familyOptions.append(try Self.makeFamilyOptions(base: options, cache: cache, spec))
        }
        var handles = [OpaquePointer?](repeating: nil, count: all.count)
        let names = all.map { $0.name }
        let opened: OpaquePointer? = try Self.withCStrings(names) { cNames throws(StorageError) in
            try familyOptions.map { Optional($0) }.withUnsafeBufferPointer { optsPtr throws(StorageError) in
                try handles.withUnsafeMutableBufferPointer { handlesPtr throws(StorageError) in
                    try withErrorPointer { err in
                        readOnly
                            ? rocksdb_open_for_read_only_column_families(
                                options, path, Int32(all.count), cNames, optsPtr.baseAddress,
                                handlesPtr.baseAddress, 0, err)
                            : rocksdb_open_column_families(
                                options, path, Int32(all.count), cNames, optsPtr.baseAddress,
                                handlesPtr.baseAddress, err)
                    }
                }
            }
        }
        guard let opened else { throw StorageError(.io, "rocksdb: open of \(path) returned no handle") }
        db = opened
        var familyHandles: [Family] = []
        for handle in handles.dropFirst() {
            familyHandles.append(Family(handle: try Self.allocated(handle, "a column family handle")))
        }
        families = familyHandles
        defaultFamily = handles[0]
    }

    private var defaultFamily: OpaquePointer?

    private static func makeFamilyOptions(base: OpaquePointer, cache: OpaquePointer, _ spec: FamilyOptions) throws(StorageError) -> OpaquePointer {
        var cfOptions = try allocated(rocksdb_options_create_copy(base), "column family options")
        if spec.insertHint {
            // Not in the C API; the options-string parser reaches it. One hint per first key
            // byte (0 for every id below 2^56): the last key inserted with that byte.
            cfOptions = try applying("memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1", to: cfOptions)
        }
        let table = try allocated(rocksdb_block_based_options_create(), "table options")
        rocksdb_block_based_options_set_block_cache(table, cache)
        // Index and filter blocks stay with their table readers (about 1.3 bytes per key, outside
        // the cache) instead of competing in the LRU block cache: a large SST's filter block is
        // bigger than one cache shard (64 MiB / 64 shards), so it was evicted at once and re-read
        // on every lookup. That made a 10M-event import spend 95% of its time re-reading filters.
        rocksdb_block_based_options_set_cache_index_and_filter_blocks(table, 0)
        if spec.bloomFilter {
            rocksdb_block_based_options_set_filter_policy(table, rocksdb_filterpolicy_create_bloom(10))
        }
        if spec.memtableFilter {
            rocksdb_options_set_memtable_prefix_bloom_size_ratio(cfOptions, memtableFilterRatio)
            rocksdb_options_set_memtable_whole_key_filtering(cfOptions, 1)
        }
        rocksdb_options_set_block_based_table_factory(cfOptions, table)
        rocksdb_block_based_options_destroy(table)
        switch spec.compression {
        case .none: rocksdb_options_set_compression(cfOptions, Int32(rocksdb_no_compression))
        case .lz4: rocksdb_options_set_compression(cfOptions, Int32(rocksdb_lz4_compression))
        case .lz4ThenZstd:
            rocksdb_options_set_compression(cfOptions, Int32(rocksdb_lz4_compression))
            rocksdb_options_set_bottommost_compression(cfOptions, Int32(rocksdb_zstd_compression))
        }
        return cfOptions
    }

    /// The memtable filter's share of the write buffer.
    private static let memtableFilterRatio = 0.1

    /// Puts a whole-key bloom filter on `family`'s memtables from the next one on, or takes it
    /// off (`FamilyOptions.memtableFilter`). The memtable being written keeps what it has.
    func setMemtableFilter(_ family: Family, on: Bool) throws(StorageError) {
        // RocksDB's read-only DB does not override SetOptions: it would write the MANIFEST.
        guard !readOnly else { throw StorageError(.invalidArgument, "rocksdb: options of a read-only store cannot change") }
        let db = try handle()
        let settings = [
            ("memtable_prefix_bloom_size_ratio", on ? "\(Self.memtableFilterRatio)" : "0"),
            ("memtable_whole_key_filtering", on ? "true" : "false"),
        ]
        try Self.withCStrings(settings.map(\.0)) { keys throws(StorageError) in
            try Self.withCStrings(settings.map(\.1)) { values throws(StorageError) in
                try withErrorPointer { rocksdb_set_options_cf(db, family.handle, Int32(settings.count), keys, values, $0) }
            }
        }
    }

    /// `base` with the settings of an options string (RocksDB's parser reaches options the C API
    /// does not). Consumes `base`: it is destroyed, also on failure.
    private static func applying(_ settings: String, to base: OpaquePointer) throws(StorageError) -> OpaquePointer {
        defer { rocksdb_options_destroy(base) }
        let result = try allocated(rocksdb_options_create(), "options")
        do {
            try withErrorPointer { rocksdb_get_options_from_string(base, settings, result, $0) }
        } catch {
            rocksdb_options_destroy(result)
            throw error
        }
        return result
    }

    /// A pointer a RocksDB constructor returned; nil only when it could not allocate.
    private static func allocated<T>(_ pointer: T?, _ what: String) throws(StorageError) -> T {
        guard let pointer else { throw StorageError(.io, "rocksdb: could not allocate \(what)") }
        return pointer
    }

    private static func withCStrings<T>(
        _ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) throws(StorageError) -> T
    ) throws(StorageError) -> T {
        let duplicated = strings.map { strdup($0) }
        defer { duplicated.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = duplicated.map { $0.map { UnsafePointer($0) } }
        return try pointers.withUnsafeBufferPointer { buffer throws(StorageError) in
            guard let base = buffer.baseAddress else { throw StorageError(.invalidArgument, "rocksdb: no strings") }
            return try body(base)
        }
    }

    deinit {
        close()
        rocksdb_writeoptions_destroy(syncWrite)
        rocksdb_writeoptions_destroy(asyncWrite)
        rocksdb_readoptions_destroy(readOptions)
        for cfOptions in familyOptions { rocksdb_options_destroy(cfOptions) }
        rocksdb_options_destroy(options)
        rocksdb_cache_destroy(cache)
    }

    /// Closes the database. Idempotent. Callers must have stopped every other use first.
    func close() {
        guard let db else { return }
        for family in families { rocksdb_column_family_handle_destroy(family.handle) }
        if let defaultFamily { rocksdb_column_family_handle_destroy(defaultFamily) }
        families = []
        defaultFamily = nil
        rocksdb_close(db)
        self.db = nil
    }

    private func handle() throws(StorageError) -> OpaquePointer {
        guard let db else { throw StorageError(.closed, "the store is closed") }
        return db
    }

    /// Point read; nil when the key is absent.
    func get(_ family: Family, _ key: [UInt8]) throws(StorageError) -> [UInt8]? {
        let db = try handle()
        var length = 0
        let value: UnsafeMutablePointer<CChar>? = try key.withUnsafeBufferPointer { k throws(StorageError) in
            try withErrorPointer { err in
                k.withMemoryRebound(to: CChar.self) { kc in
                    rocksdb_get_cf(db, readOptions, family.handle, kc.baseAddress, kc.count, &length, err)
                }
            }
        }
        guard let value else { return nil }
        defer { rocksdb_free(value) }
        return Array(UnsafeRawBufferPointer(start: value, count: length))
    }

    /// Applies `batch` atomically, through the WAL; `sync` makes it durable (fsync) before returning.
    func write(_ batch: RocksWriteBatch, sync: Bool) throws(StorageError) {
        let db = try handle()
        try withErrorPointer { rocksdb_write(db, sync ? syncWrite : asyncWrite, batch.handle, $0) }
    }

    /// Makes everything written so far durable (used by the interval durability policy).
    /// Writes every family's memtable to SST files and waits. Done at a clean close so the next
    /// open (above all a read-only one, which replays the WAL into memory on every open) starts
    /// from SSTs instead of replaying up to a memtable's worth of log.
    func flushAll() throws(StorageError) {
        let db = try handle()
        let options = rocksdb_flushoptions_create()
        defer { rocksdb_flushoptions_destroy(options) }
        rocksdb_flushoptions_set_wait(options, 1)
        for family in families {
            try withErrorPointer { rocksdb_flush_cf(db, options, family.handle, $0) }
        }
    }

    /// A RocksDB checkpoint of the whole database in `directory`, which must not exist: SST files
    /// hard-linked when on the same file system (copied otherwise), the manifest and options
    /// copied. Memtables are flushed first, so the image needs no WAL replay. Writes go on while
    /// it runs; the image holds every write completed before the flush.
    func checkpoint(to directory: String) throws(StorageError) {
        let db = try handle()
        let checkpoint = try withErrorPointer { rocksdb_checkpoint_object_create(db, $0) }
        guard let checkpoint else { throw StorageError(.io, "rocksdb: could not create a checkpoint object") }
        defer { rocksdb_checkpoint_object_destroy(checkpoint) }
        try withErrorPointer { rocksdb_checkpoint_create(checkpoint, directory, 0, $0) }
    }

    /// Compacts `family`'s keys in `start..<limit` down to the bottom level, so rewritten values
    /// free their old space. Not exclusive: automatic compactions (and so appends) go on.
    func compactRange(_ family: Family, start: [UInt8], limit: [UInt8]) throws(StorageError) {
        let db = try handle()
        let options = rocksdb_compactoptions_create()
        defer { rocksdb_compactoptions_destroy(options) }
        rocksdb_compactoptions_set_exclusive_manual_compaction(options, 0)
        start.withUnsafeBufferPointer { s in
            limit.withUnsafeBufferPointer { l in
                s.withMemoryRebound(to: CChar.self) { sc in
                    l.withMemoryRebound(to: CChar.self) { lc in
                        rocksdb_compact_range_cf_opt(db, family.handle, options, sc.baseAddress, sc.count, lc.baseAddress, lc.count)
                    }
                }
            }
        }
    }

    func syncWAL() throws(StorageError) {
        let db = try handle()
        try withErrorPointer { rocksdb_flush_wal(db, 1, $0) }
    }

    func iterator(_ family: Family, lower: [UInt8]? = nil, upper: [UInt8]? = nil, fillCache: Bool = true) throws(StorageError) -> RocksIterator {
        RocksIterator(db: try handle(), family: family, lower: lower, upper: upper, fillCache: fillCache)
    }

    /// The sequence number of the last write RocksDB holds (recovered or written since).
    var latestSequence: UInt64 {
        guard let db else { return 0 }
        return rocksdb_get_latest_sequence_number(db)
    }

    /// The id RocksDB gave `family` when it was created; WAL records name families by it.
    func familyID(_ family: Family) -> UInt32 {
        rocksdb_column_family_handle_get_id(family.handle)
    }

    /// A RocksDB property (e.g. "rocksdb.estimate-num-keys") for one family, or the whole DB.
    func property(_ name: String, family: Family? = nil) -> String? {
        guard let db else { return nil }
        let value = family.map { rocksdb_property_value_cf(db, $0.handle, name) } ?? rocksdb_property_value(db, name)
        guard let value else { return nil }
        defer { rocksdb_free(value) }
        return String(cString: value)
    }
}
