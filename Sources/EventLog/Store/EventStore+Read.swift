/// Reads. Every read sees committed events only (ids up to `lastID`) and is bounded by a limit.
/// Reads call RocksDB directly; they are short point reads and scans.
extension EventStore {
    func read<T>(_ body: () throws(StorageError) -> T) throws(LogError) -> T {
        try storageCall(body)
    }

    /// The event with `id`, or nil if there is none (0, or past the last committed id).
    public func event(_ id: EventID) throws(LogError) -> Event? {
        guard id >= 1, id <= lastID else { return nil }
        return try read { () throws(StorageError) in try storage.event(id) }
    }

    public func id(forKey key: String) throws(LogError) -> EventID? {
        guard let id = try read({ () throws(StorageError) in try storage.id(forKey: key) }), id <= lastID else { return nil }
        return id
    }

    public func event(key: String) throws(LogError) -> Event? {
        guard let id = try id(forKey: key) else { return nil }
        return try event(id)
    }

    /// Calls `body` with each existing event of `ids`, which must be ascending, through one
    /// iterator: a traversal's answer is mostly dense, and stepping to the next record costs far
    /// less than a point lookup (a filtered 80k-event ancestor set: about 5x faster).
    public func forEachEvent(ascending ids: [EventID], _ body: (Event) throws -> Void) throws {
        let last = lastID
        guard let first = ids.first, first <= last, let upper = ids.last.map({ min($0, last) }) else { return }
        let it = try read { () throws(StorageError) in
            try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(first), upper: KeySpace.id(upper + 1))
        }
        func current() -> EventID { it.withKey { LogStorage.be64($0, at: 0) } }
        var positioned = false
        for id in ids where id <= upper {
            var steps = 0
            while positioned, it.isValid, steps < 16, current() < id {
                it.next()
                steps += 1
            }
            if !positioned || (it.isValid && current() < id) {
                it.seek(KeySpace.id(id))
                positioned = true
            }
            guard it.isValid else { break }
            guard current() == id else { continue }
            let event = try read { () throws(StorageError) in try RecordCodec.decode(id: id, it.value) }
            try body(event)
        }
        try read { () throws(StorageError) in try it.checkStatus() }
    }

    /// Up to `limit` events with ids greater than `after`, in id order (a Kafka-style fetch),
    /// stopping early past `Limits.readBytesMax` record bytes.
    public func events(after: EventID, limit: Int) throws(LogError) -> [Event] {
        let last = lastID
        guard after < last else { return [] }
        let count = min(Int(min(last - after, UInt64(Int.max))), max(0, min(limit, limits.readEventsMax)))
        return try read { () throws(StorageError) -> [Event] in
            let it = try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(after + 1), upper: KeySpace.id(last + 1))
            it.seekToFirst()
            var events: [Event] = []
            events.reserveCapacity(count)
            var bytes = 0
            while it.isValid && events.count < count && bytes < limits.readBytesMax {
                let id = it.withKey { LogStorage.be64($0, at: 0) }
                let record = it.value
                bytes += record.count
                events.append(try RecordCodec.decode(id: id, record))
                it.next()
            }
            try it.checkStatus()
            return events
        }
    }

    /// Events of `stream` with ids greater than `after`, oldest first.
    public func events(stream: String, after: EventID = 0, limit: Int) throws(LogError) -> [Event] {
        guard let streamID = try read({ () throws(StorageError) in try storage.dictionaryID(MetaKey.stream(stream)) }) else { return [] }
        return try events(ids: try indexScan(.byStream, streamID, after: after, before: nil, limit: limit, newestFirst: false))
    }

    /// Events of `type` with ids below `before` (or all), newest first.
    public func events(type: String, before: EventID? = nil, limit: Int) throws(LogError) -> [Event] {
        guard let typeID = try read({ () throws(StorageError) in try storage.dictionaryID(MetaKey.type(type)) }) else { return [] }
        return try events(ids: try indexScan(.byType, typeID, after: nil, before: before, limit: limit, newestFirst: true))
    }

    private func events(ids: [EventID]) throws(LogError) -> [Event] {
        var events: [Event] = []
        events.reserveCapacity(ids.count)
        for id in ids {
            if let event = try event(id) { events.append(event) }
        }
        return events
    }

    private func indexScan(
        _ family: KeySpace.Family, _ dictionaryID: UInt32, after: EventID?, before: EventID?, limit: Int, newestFirst: Bool
    ) throws(LogError) -> [EventID] {
        let bound = max(0, min(limit, limits.readEventsMax))
        let last = lastID
        let lowID = (after ?? 0) + 1
        let highID = min(before ?? (last + 1), last + 1)
        guard lowID < highID, bound > 0 else { return [] }
        return try read { () throws(StorageError) -> [EventID] in
            let it = try storage.db.iterator(
                storage.cf(family), lower: KeySpace.indexed(dictionaryID, lowID), upper: KeySpace.indexed(dictionaryID, highID))
            if newestFirst { it.seekToLast() } else { it.seekToFirst() }
            var ids: [EventID] = []
            while it.isValid && ids.count < bound {
                ids.append(it.withKey { LogStorage.be64($0, at: 4) })
                if newestFirst { it.prev() } else { it.next() }
            }
            try it.checkStatus()
            return ids
        }
    }

    /// Parent ids of `id` in the event's own order; nil if the event does not exist.
    public func parents(of id: EventID) throws(LogError) -> [EventID]? {
        guard id >= 1, id <= lastID else { return nil }
        return try parentIDs(id)
    }

    /// The in-memory graph when it covers `id`.
    func graph(covering id: EventID) -> GraphIndex? {
        guard let graph, let last = graph.lastID, id <= last else { return nil }
        return graph
    }

    /// Parents of an existing `id`, from memory when the graph covers it.
    func parentIDs(_ id: EventID) throws(LogError) -> [EventID] {
        if let graph = graph(covering: id) { return graph.parents(of: id) }
        return try read { () throws(StorageError) in try storage.parents(id) }
    }

    /// Children of an existing `id` up to `last`, ascending, at most `limit`.
    func childIDs(_ id: EventID, upTo last: EventID, limit: Int) throws(LogError) -> [EventID] {
        if let graph = graph(covering: id) { return graph.children(of: id, upTo: last, limit: limit) }
        return try read { () throws(StorageError) in try storage.children(id, limit: limit) }.filter { $0 <= last }
    }

    /// Child ids of `id`, ascending (= append order), up to `upTo` (default: the last committed
    /// id; a traversal passes the bound it started with, so its view never grows mid-walk);
    /// nil if the event does not exist. Throws `.limitExceeded` past `limit` (default `Limits.listIDsMax`).
    public func children(of id: EventID, limit: Int? = nil, upTo: EventID? = nil) throws(LogError) -> [EventID]? {
        let last = min(upTo ?? lastID, lastID)
        guard id >= 1, id <= last else { return nil }
        let bound = limit ?? limits.listIDsMax
        let ids = try childIDs(id, upTo: last, limit: bound == Int.max ? bound : bound + 1)
        guard ids.count <= bound else {
            throw LogError(.limitExceeded, "event \(id) has more than \(bound) children (listIDsMax)")
        }
        return ids
    }

    /// Events without parents, ascending. Throws `.limitExceeded` past `Limits.listIDsMax`.
    public func roots() throws(LogError) -> [EventID] {
        try boundedMetaIDs(MetaKey.rootPrefix, what: "roots")
    }

    /// Events without children, ascending. Throws `.limitExceeded` past `Limits.listIDsMax`.
    public func heads() throws(LogError) -> [EventID] {
        try boundedMetaIDs(MetaKey.headPrefix, what: "heads")
    }

    private func boundedMetaIDs(_ prefix: [UInt8], what: String) throws(LogError) -> [EventID] {
        // Not filtered by lastID: a parent's head entry disappears in the same write that stores
        // its child, so filtering the child out until it is published would lose both briefly.
        let bound = limits.listIDsMax
        let ids = try read { () throws(StorageError) in try storage.metaIDs(prefix: prefix, limit: bound + 1) }
        guard ids.count <= bound else { throw LogError(.limitExceeded, "more than \(bound) \(what) (listIDsMax)") }
        return ids
    }

    /// Counts for status pages. Roots and heads are counted by scanning their index, up to `countMax`.
    public func stats(countMax: Int = 10_000_000) throws(LogError) -> StoreStats {
        let meta = writerMeta
        return StoreStats(
            events: lastID, edges: meta.edges,
            roots: try read { () throws(StorageError) in try storage.metaCount(prefix: MetaKey.rootPrefix, limit: countMax) },
            heads: try read { () throws(StorageError) in try storage.metaCount(prefix: MetaKey.headPrefix, limit: countMax) },
            epoch: meta.currentEpoch,
            sealedSegments: try read { () throws(StorageError) in try storage.segments().count },
            diskBytes: diskBytes())
    }

    /// RocksDB figures worth watching, summed over the column families: SST bytes, memtable
    /// bytes, pending compaction bytes, estimated keys; plus the block cache usage.
    public func engineStats() -> [(name: String, value: UInt64)] {
        let summed = [
            ("sst_bytes", "rocksdb.total-sst-files-size"), ("memtable_bytes", "rocksdb.cur-size-all-mem-tables"),
            ("pending_compaction_bytes", "rocksdb.estimate-pending-compaction-bytes"), ("estimated_keys", "rocksdb.estimate-num-keys"),
        ]
        var stats: [(name: String, value: UInt64)] = summed.map { name, property in
            (name, KeySpace.Family.allCases.reduce(UInt64(0)) { total, family in
                total + (UInt64(storage.db.property(property, family: storage.cf(family)) ?? "0") ?? 0)
            })
        }
        stats.append(("block_cache_bytes", UInt64(storage.db.property("rocksdb.block-cache-usage") ?? "0") ?? 0))
        return stats
    }

    /// Bytes of the database files as RocksDB reports them (SST + memtables).
    public func diskBytes() -> UInt64 {
        var total: UInt64 = 0
        for family in KeySpace.Family.allCases {
            let cf = storage.cf(family)
            total += UInt64(storage.db.property("rocksdb.total-sst-files-size", family: cf) ?? "0") ?? 0
            total += UInt64(storage.db.property("rocksdb.cur-size-all-mem-tables", family: cf) ?? "0") ?? 0
        }
        return total
    }
}

/// Store-wide counters.
public struct StoreStats: Sendable, Hashable {
    public var events: UInt64
    public var edges: UInt64
    public var roots: Int
    public var heads: Int
    public var epoch: UInt64
    public var sealedSegments: Int
    public var diskBytes: UInt64
}
