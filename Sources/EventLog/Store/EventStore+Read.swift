/// Reads. Every read sees committed events only (ids up to `lastID`) and is bounded by a limit.
/// Reads call RocksDB directly; they are short point reads and scans.
extension EventStore {
    func read<T>(_ body: () throws(StorageError) -> T) throws(LogError) -> T {
        try storageCall(body)
    }

    /// The event with `id`, or nil if there is none (0, or past the last committed id).
    public func event(_ id: EventID) throws(LogError) -> Event? {
        try record(id, checkText: false).map { record throws(LogError) in try read { () throws(StorageError) in try record.event() } }
    }

    /// The stored record of `id`, checked and read in place (`StoredRecord`), or nil as `event`.
    public func record(_ id: EventID) throws(LogError) -> StoredRecord? {
        try record(id, checkText: true)
    }

    func record(_ id: EventID, checkText: Bool) throws(LogError) -> StoredRecord? {
        try checkNotPruned(id)
        guard id >= 1, id <= lastID else { return nil }
        let record = try read { () throws(StorageError) in
            try storage.record(id).map { bytes throws(StorageError) in try RecordCodec.parse(id: id, bytes, checkText: checkText) }
        }
        // A prune that started after the check above may have removed it since.
        if record == nil { try checkNotPruned(id) }
        return record
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
    /// less than a point lookup (a filtered 80k-event ancestor set: about 5x faster). Ids below
    /// the first id when it starts are skipped; one pruned while it runs throws `.pruned`.
    public func forEachEvent(ascending ids: [EventID], _ body: (Event) throws -> Void) throws {
        try forEach(ascending: ids, read: { try $0.event($1) }, body)
    }

    /// `forEachEvent` with each record read in place (`StoredRecord`), for callers that only
    /// write its members out.
    public func forEachRecord(ascending ids: [EventID], _ body: (StoredRecord) throws -> Void) throws {
        try forEach(ascending: ids, read: { try $0.record($1) }, body)
    }

    private func forEach<T>(ascending ids: [EventID], read: (EventReader, EventID) throws -> T?, _ body: (T) throws -> Void) throws {
        guard let first = ids.first, let last = ids.last else { return }
        let pruned = index.firstID
        try withReader(from: first, through: last) { reader in
            for id in ids where id >= pruned {
                if let item = try read(reader, id) { try body(item) }
            }
        }
    }

    /// Calls `body` with a reader of events with ids in `first...last` (and at most the last
    /// committed id), for reads that mostly go forward: a query page, a lineage tree's nodes.
    /// The reader must not outlive `body`: its iterator pins RocksDB's files, and closing the
    /// store while one is open fails an assertion inside RocksDB.
    public func withReader<T>(from first: EventID, through last: EventID, _ body: (EventReader) throws -> T) throws -> T {
        let lower = max(1, first)
        let range = lower..<max(lower, min(last, lastID) + 1)
        let it = try read { () throws(StorageError) in
            try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(range.lowerBound), upper: KeySpace.id(range.upperBound))
        }
        let reader = EventReader(store: self, iterator: it, range: range)
        let result = try body(reader)
        try reader.finish()
        return result
    }

    /// Up to `limit` events with ids greater than `after`, in id order (a Kafka-style fetch),
    /// stopping early past `Limits.readBytesMax` record bytes.
    public func events(after: EventID, limit: Int) throws(LogError) -> [Event] {
        let last = lastID
        guard after < last else { return [] }
        try checkNotPruned(after: after)
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
        try checkNotPruned(after: after)
        guard let streamID = try dictionaryID(MetaKey.stream(stream)) else { return [] }
        let bound = max(0, min(limit, limits.readEventsMax))
        let ids = index.scan(type: nil, stream: streamID, after: after, upTo: lastID, limit: bound, scanMax: limits.columnScanIDsMax).ids
        return try events(ids: ids)
    }

    /// Events of `type` with ids below `before` (or all), newest first.
    public func events(type: String, before: EventID? = nil, limit: Int) throws(LogError) -> [Event] {
        if let before, before >= 2 { try checkNotPruned(before - 1) }
        guard let typeID = try dictionaryID(MetaKey.type(type)) else { return [] }
        let bound = max(0, min(limit, limits.readEventsMax))
        let ids = index.scanBackward(type: typeID, stream: nil, before: min(before ?? .max, lastID + 1), limit: bound, scanMax: limits.columnScanIDsMax)
        return try events(ids: ids)
    }

    func dictionaryID(_ metaKey: [UInt8]) throws(LogError) -> UInt32? {
        try read { () throws(StorageError) in try storage.dictionaryID(metaKey) }
    }

    private func events(ids: [EventID]) throws(LogError) -> [Event] {
        var events: [Event] = []
        events.reserveCapacity(ids.count)
        for id in ids {
            if let event = try event(id) { events.append(event) }
        }
        return events
    }

    /// Parent ids of `id` in the event's own order; nil if the event does not exist.
    public func parents(of id: EventID) throws(LogError) -> [EventID]? {
        try checkNotPruned(id)
        guard id >= 1, id <= lastID else { return nil }
        return index.parents(of: id)
    }

    /// Child ids of `id`, ascending (= append order), up to `upTo` (default: the last committed
    /// id; a traversal passes the bound it started with, so its view never grows mid-walk);
    /// nil if the event does not exist. Throws `.limitExceeded` past `limit` (default `Limits.listIDsMax`).
    public func children(of id: EventID, limit: Int? = nil, upTo: EventID? = nil) throws(LogError) -> [EventID]? {
        let last = min(upTo ?? lastID, lastID)
        try checkNotPruned(id)
        guard id >= 1, id <= last else { return nil }
        let bound = limit ?? limits.listIDsMax
        let ids = index.children(of: id, upTo: last, limit: bound == Int.max ? bound : bound + 1)
        guard ids.count <= bound else {
            throw LogError(.limitExceeded, "event \(id) has more than \(bound) children (listIDsMax)")
        }
        return ids
    }

    /// Events without parents, ascending. Throws `.limitExceeded` past `Limits.listIDsMax`.
    public func roots() throws(LogError) -> [EventID] {
        try boundary(roots: true)
    }

    /// Events without children, ascending. Throws `.limitExceeded` past `Limits.listIDsMax`.
    public func heads() throws(LogError) -> [EventID] {
        try boundary(roots: false)
    }

    private func boundary(roots: Bool) throws(LogError) -> [EventID] {
        let bound = limits.listIDsMax
        let ids = index.boundary(roots: roots, upTo: lastID, limit: bound + 1)
        guard ids.count <= bound else { throw LogError(.limitExceeded, "more than \(bound) \(roots ? "roots" : "heads") (listIDsMax)") }
        return ids
    }

    /// Counts for status pages, from the in-memory index's counters.
    public func stats() throws(LogError) -> StoreStats {
        let meta = writerMeta
        let last = index.lastID
        return StoreStats(
            events: last, edges: meta.edges, roots: index.rootCount, heads: index.headCount,
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

/// Events read through one RocksDB iterator (`EventStore.withReader`): the next record of a dense
/// forward read is a step instead of a point lookup. A read far from the one before is a point
/// lookup instead of a seek: a seek positions itself in every memtable and level-0 file, where
/// a lookup skips most of them by their bloom filters (a lineage tree's events spread over the
/// whole log: its meta view took four times CelestialTree's time with seeks). Serves one thread
/// at a time. Steps see the store as it was when the reader was made, lookups as it is: like the
/// point reads it replaces, a page read across a compaction batch or a truncation may show both.
public final class EventReader {
    private let store: EventStore
    private let it: RocksIterator
    /// Ids outside it are answered nil, as the iterator's bounds would.
    private let range: Range<EventID>
    private var positioned = false
    /// The id read last. When `positioned`, the iterator stands on the first record at or after it.
    private var last: EventID = 0
    /// Records a forward read steps over before it takes the read as a jump instead.
    private static let stepsMax: EventID = 16

    init(store: EventStore, iterator: RocksIterator, range: Range<EventID>) {
        self.store = store
        self.it = iterator
        self.range = range
    }

    private func current() -> EventID { it.withKey { LogStorage.be64($0, at: 0) } }

    /// The event with `id`, or nil if there is none in the reader's range; throws for a pruned id
    /// as `EventStore.event` does.
    public func event(_ id: EventID) throws(LogError) -> Event? {
        try record(id, checkText: false).map { record throws(LogError) in try store.read { () throws(StorageError) in try record.event() } }
    }

    /// `event`, read in place (`StoredRecord`).
    public func record(_ id: EventID) throws(LogError) -> StoredRecord? {
        try record(id, checkText: true)
    }

    private func record(_ id: EventID, checkText: Bool) throws(LogError) -> StoredRecord? {
        try store.checkNotPruned(id)
        guard range.contains(id) else { return nil }
        let near = last > 0 && id > last && id - last <= Self.stepsMax
        last = id
        guard near else {
            positioned = false
            return try store.record(id, checkText: checkText)
        }
        if positioned {
            while it.isValid, current() < id { it.next() }
        } else {
            it.seek(KeySpace.id(id))
            positioned = true
        }
        guard it.isValid, current() == id else {
            try finish()
            try store.checkNotPruned(id)
            return nil
        }
        let record = it.value
        return try store.read { () throws(StorageError) in try RecordCodec.parse(id: id, record, checkText: checkText) }
    }

    /// Throws if the iteration stopped because of an error rather than the end of its range.
    public func finish() throws(LogError) {
        try store.read { () throws(StorageError) in try it.checkStatus() }
    }
}
