/// Typed access to the key space over one RocksDB database: what the writer, the readers and
/// `verify` share. It holds no mutable state of its own; thread-safety is RocksDB's.
final class LogStorage: Sendable {
    let db: RocksDB
    private let families: [RocksDB.Family]

    init(path: String, readOnly: Bool, blockCacheBytes: Int) throws(StorageError) {
        db = try RocksDB(
            path: path, families: KeySpace.Family.allCases.map(\.options),
            readOnly: readOnly, blockCacheBytes: blockCacheBytes)
        families = db.families
    }

    func cf(_ family: KeySpace.Family) -> RocksDB.Family { families[family.rawValue] }

    func close() { db.close() }

    // MARK: events

    func record(_ id: EventID) throws(StorageError) -> [UInt8]? {
        try db.get(cf(.log), KeySpace.id(id))
    }

    func event(_ id: EventID) throws(StorageError) -> Event? {
        guard id >= 1, let bytes = try record(id) else { return nil }
        return try RecordCodec.decode(id: id, bytes)
    }

    /// The parent ids of `id` from the `parents` family ([] for a root or an unknown id).
    func parents(_ id: EventID) throws(StorageError) -> [EventID] {
        guard let bytes = try db.get(cf(.parents), KeySpace.id(id)) else { return [] }
        return try RecordCodec.decodeParents(id: id, bytes)
    }

    /// Child ids of `parent` in ascending order, at most `limit` (`limit + 1` lets callers detect overflow).
    func children(_ parent: EventID, limit: Int) throws(StorageError) -> [EventID] {
        let prefix = KeySpace.id(parent)
        let it = try db.iterator(cf(.children), lower: prefix, upper: KeySpace.successor(ofPrefix: prefix))
        it.seekToFirst()
        var ids: [EventID] = []
        while it.isValid && ids.count < limit {
            ids.append(it.withKey { k in Self.be64(k, at: 8) })
            it.next()
        }
        try it.checkStatus()
        return ids
    }

    func hasChildren(_ parent: EventID) throws(StorageError) -> Bool {
        try !children(parent, limit: 1).isEmpty
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

    /// Ids stored under a `meta` prefix (`root/`, `head/`), ascending, at most `limit`.
    func metaIDs(prefix: [UInt8], limit: Int) throws(StorageError) -> [EventID] {
        let it = try db.iterator(cf(.meta), lower: prefix, upper: KeySpace.successor(ofPrefix: prefix))
        it.seekToFirst()
        var ids: [EventID] = []
        while it.isValid && ids.count < limit {
            let key = it.key
            guard key.count == prefix.count + 8 else {
                throw StorageError(.corruption, "meta: malformed key under \(String(decoding: prefix, as: UTF8.self))")
            }
            ids.append(key.be64(at: prefix.count))
            it.next()
        }
        try it.checkStatus()
        return ids
    }

    /// Number of keys under a `meta` prefix, counting at most `limit`.
    func metaCount(prefix: [UInt8], limit: Int) throws(StorageError) -> Int {
        let it = try db.iterator(cf(.meta), lower: prefix, upper: KeySpace.successor(ofPrefix: prefix), fillCache: false)
        it.seekToFirst()
        var count = 0
        while it.isValid && count < limit {
            count += 1
            it.next()
        }
        try it.checkStatus()
        return count
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
