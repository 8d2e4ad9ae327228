import Synchronization
/// Typed access to the key space over one RocksDB database: what the writer, the readers and
/// `verify` share. It holds no mutable state of its own; thread-safety is RocksDB's.
final class LogStorage: Sendable {
    let db: RocksDB
    private let families: [RocksDB.Family]
    /// The applier's one write batch (`write(_:epochHistory:sync:)`), reused group after group.
    let groupBatch = Mutex(RocksWriteBatch())
    /// Who looks keys up in the `keys` family now, so its memtable wants a filter
    /// (`sequencerLooksUpKeys`, `importLooksUpKeys`), and whether RocksDB was told so.
    private let keyLookups: Mutex<KeyLookups>

    private struct KeyLookups {
        /// The sequencer cannot tell new keys by itself.
        var sequencer: Bool
        /// Imports under way (each looks up every pinned line's key).
        var imports = 0
        var filtered: Bool
        var wanted: Bool { sequencer || imports > 0 }
    }

    /// `keyLookups`: appends will look their keys up in the `keys` family (no key filter in
    /// front of it, `Limits.keyFilterBytesMax` 0), so its memtable gets a filter from the start
    /// (`updateKeyLookups`).
    init(
        path: String, readOnly: Bool, blockCacheBytes: Int, filesMax: Int = -1, walRecovery: RocksDB.WALRecovery = .tolerateIncompleteTail,
        keyLookups: Bool = false
    ) throws(StorageError) {
        var specs = KeySpace.Family.allCases.map(\.options)
        specs[KeySpace.Family.keys.rawValue].memtableFilter = keyLookups
        self.keyLookups = Mutex(KeyLookups(sequencer: keyLookups, filtered: keyLookups))
        do {
            db = try RocksDB(
                path: path, families: specs,
                readOnly: readOnly, blockCacheBytes: blockCacheBytes, filesMax: filesMax, walRecovery: walRecovery)
        } catch let error where error.message.contains("Column families not opened") {
            // Format 1 had seven families (parents, children, by_type, by_stream besides these).
            throw StorageError(
                .invalidArgument,
                "\(path) holds a store of an earlier format (1); export it with the Banyan build that wrote it and import the export here")
        }
        families = db.families
    }

    func cf(_ family: KeySpace.Family) -> RocksDB.Family { families[family.rawValue] }

    /// The `keys` family's memtable filter: a lookup that misses skips the memtable's skiplist,
    /// and each insert sets the filter's bits. Keyed appends look keys up in storage only while
    /// the sequencer's key filter cannot answer (it is being built, is off or gave up), and an
    /// import looks up every pinned line's key, so the filter is on only then: during keyed
    /// ingest, setting its bits was a third of the `keys` family's insert on the committer's
    /// thread (docs/PERFORMANCE.md, "Keyed ingest"). RocksDB is told only of a change, since
    /// each one writes its MANIFEST and OPTIONS file.
    private func updateKeyLookups(_ change: (inout KeyLookups) -> Void) throws(StorageError) {
        try keyLookups.withLock { state throws(StorageError) in
            change(&state)
            guard state.wanted != state.filtered else { return }
            try db.setMemtableFilter(cf(.keys), on: state.wanted)
            state.filtered = state.wanted
        }
    }

    /// The sequencer's part of `updateKeyLookups` (`CommitStorage`).
    func sequencerLooksUpKeys(_ on: Bool) throws(StorageError) {
        try updateKeyLookups { $0.sequencer = on }
    }

    /// An import's part of `updateKeyLookups`: `true` when it starts, `false` when it ends.
    func importLooksUpKeys(_ starts: Bool) throws(StorageError) {
        try updateKeyLookups { $0.imports += starts ? 1 : -1 }
    }

    func close() { db.close() }

    // MARK: events

    func record(_ id: EventID) throws(StorageError) -> [UInt8]? {
        try db.get(cf(.log), KeySpace.id(id))
    }

    func event(_ id: EventID) throws(StorageError) -> Event? {
        guard id >= 1, let bytes = try record(id) else { return nil }
        return try RecordCodec.decode(id: id, bytes)
    }

    func id(forKey key: String) throws(StorageError) -> EventID? {
        guard let bytes = try db.get(cf(.keys), Array(key.utf8)) else { return nil }
        guard bytes.count == 8 else { throw StorageError(.corruption, "keys: value for \(key) is \(bytes.count) bytes") }
        return bytes.be64(at: 0)
    }

    /// The highest id in the log (0 when empty).
    func lastID() throws(StorageError) -> EventID {
        let it = try db.iterator(cf(.log))
        it.seekToLast()
        guard it.isValid else {
            try it.checkStatus()
            return 0
        }
        return it.withKey { k in Self.be64(k, at: 0) }
    }

    // MARK: meta

    func meta(_ key: [UInt8]) throws(StorageError) -> [UInt8]? {
        try db.get(cf(.meta), key)
    }

    /// The dictionary id of a type or stream name, or nil if the name was never used.
    func dictionaryID(_ metaKey: [UInt8]) throws(StorageError) -> UInt32? {
        guard let bytes = try meta(metaKey) else { return nil }
        guard bytes.count == 4 else { throw StorageError(.corruption, "meta: dictionary value is \(bytes.count) bytes") }
        var r = ByteReader(bytes)
        return try r.be32()
    }

    func segments() throws(StorageError) -> [SegmentEntry] {
        let prefix = MetaKey.segmentPrefix
        let it = try db.iterator(cf(.meta), lower: prefix, upper: KeySpace.successor(ofPrefix: prefix))
        it.seekToFirst()
        var entries: [SegmentEntry] = []
        while it.isValid {
            entries.append(try SegmentEntry.decode(it.value))
            it.next()
        }
        try it.checkStatus()
        return entries
    }

    static func be64(_ k: UnsafeRawBufferPointer, at start: Int) -> UInt64 {
        precondition(k.count >= start + 8, "key shorter than its fixed layout")
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(k[start + i]) }
        return v
    }
}
