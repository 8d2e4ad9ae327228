/// Everything one commit writes, as a value: the unit the sequencer produces, the applier writes
/// in one atomic storage write, and (with replication) a follower applies verbatim.
///
/// A group holds the events `first...last` of one epoch: their encoded records (`RecordCodec`,
/// packed back to back), the keys they claim, their index entries (the group's `IndexBlock`), the
/// dictionary names first used in the group, the segments sealed by it, and the store counters
/// (`stats`) after it. Everything written to storage for the group is derived from these fields
/// and nothing else, so two stores that apply the same groups hold the same bytes.
public struct CommitGroup: Sendable, Equatable {
    public struct Name: Sendable, Hashable {
        var kind: DictionaryKind
        var name: String
        var id: UInt32
    }

    public internal(set) var epoch: UInt64
    /// The first id of the group; `last` is `first - 1` while it holds no event.
    public internal(set) var first: EventID
    public internal(set) var last: EventID
    /// The encoded records, back to back; `recordEnds[i]` is where record `first + i` ends.
    var records: [UInt8] = []
    var recordEnds: [Int] = []
    /// Keys claimed by the group's events, in id order.
    var keys: [(key: String, id: EventID)] = []
    /// One per event, in id order.
    var entries: [IndexBlock.Entry] = []
    var names: [Name] = []
    var seals: [SegmentEntry] = []
    /// `edges`, `nextTypeID`, `nextStreamID` after the group (the `stats` value); its epoch
    /// history is not part of the group (the applier derives it).
    var stats: StoreMeta

    init(epoch: UInt64, after lastID: EventID, meta: StoreMeta) {
        self.epoch = epoch
        first = lastID + 1
        last = lastID
        stats = meta
    }

    public var isEmpty: Bool { last < first }
    public var count: Int { isEmpty ? 0 : Int(last - first + 1) }

    /// The encoded record of event `id` (`first...last`).
    func record(_ id: EventID) -> ArraySlice<UInt8> {
        let i = Int(id - first)
        return records[(i == 0 ? 0 : recordEnds[i - 1])..<recordEnds[i]]
    }

    /// Appends the next event's record and index entry (its key, if any, separately).
    mutating func append(record: UnsafeRawBufferPointer, entry: IndexBlock.Entry) {
        last += 1
        records.append(contentsOf: record)
        recordEnds.append(records.count)
        entries.append(entry)
    }

    /// How far the group had got: a client batch that fails is undone back to here.
    struct Mark {
        var last: EventID
        var records, keys, names, seals: Int
        var stats: StoreMeta
    }

    var mark: Mark {
        Mark(last: last, records: recordEnds.count, keys: keys.count, names: names.count, seals: seals.count, stats: stats)
    }

    mutating func rollback(to mark: Mark) {
        last = mark.last
        recordEnds.removeLast(recordEnds.count - mark.records)
        records.removeLast(records.count - (recordEnds.last ?? 0))
        entries.removeLast(entries.count - mark.records)
        keys.removeLast(keys.count - mark.keys)
        names.removeLast(names.count - mark.names)
        seals.removeLast(seals.count - mark.seals)
        stats = mark.stats
    }

    /// The positions of `keys` in the `keys` family's (byte) order. RocksDB inserts a batch's
    /// keys in the batch's order, and with the family's insert hint each insert starts where the
    /// previous one ended: in order, a group's keys are near each other in the memtable's
    /// skiplist, where keys in no order (commit SHAs) each searched it from the top, a cache miss
    /// a level, and made those inserts most of the committer's time. Keys that already ascend
    /// (sequence numbers) are not sorted.
    func keyOrder() -> [Int] {
        let ascending = keys.indices.dropFirst().allSatisfy { !(KeyBytes(keys[$0].key) < KeyBytes(keys[$0 - 1].key)) }
        return ascending ? Array(keys.indices) : keys.indices.sorted { KeyBytes(keys[$0].key) < KeyBytes(keys[$1].key) }
    }

    public static func == (a: CommitGroup, b: CommitGroup) -> Bool {
        a.epoch == b.epoch && a.first == b.first && a.last == b.last && a.records == b.records && a.recordEnds == b.recordEnds
            && a.keys.elementsEqual(b.keys, by: { KeyBytes($0.0) == KeyBytes($1.0) && $0.1 == $1.1 }) && a.entries == b.entries && a.names == b.names && a.seals == b.seals
            && a.stats.encodedStats() == b.stats.encodedStats()
    }
}

extension LogStorage: CommitStorage {
    func forEachKey(while proceed: () -> Bool, _ body: (UnsafeRawBufferPointer) -> Void) throws(StorageError) {
        // Outside the block cache: a one-off read of the whole family would evict what reads need.
        var it = try db.iterator(cf(.keys), fillCache: false)
        it.seekToFirst()
        var n = 0
        while it.isValid {
            if n & 4_095 == 0, !proceed() { return }
            // An iterator pins the memtables and files it started on: a fresh one every million
            // keys lets RocksDB free those that flushes and compactions replaced meanwhile.
            if n > 0, n % 1_000_000 == 0 {
                let next = it.withKey { Array($0) }  // not read yet
                it = try db.iterator(cf(.keys), fillCache: false)
                it.seek(next)
                guard it.isValid else { break }
            }
            it.withKey(body)
            it.next()
            n += 1
        }
        try it.checkStatus()
    }

    func keyCountEstimate() -> Int {
        db.property("rocksdb.estimate-num-keys", family: cf(.keys)).flatMap { Int($0) } ?? 0
    }

    /// Writes `group` in one atomic RocksDB write, through the WAL (`sync`: fsynced before it
    /// returns). One write batch is reused for every group, so its buffer (hundreds of kilobytes
    /// for a large group) is allocated once; only the applier writes, one group at a time.
    func write(_ group: CommitGroup, epochHistory: [(epoch: UInt64, firstID: EventID)]?, sync: Bool) throws(StorageError) {
        try groupBatch.withLock { batch throws(StorageError) in
            batch.clear()
            let logFamily = cf(.log), keysFamily = cf(.keys), metaFamily = cf(.meta)
            var id = group.first
            while id <= group.last {
                withUnsafeBytes(of: id.bigEndian) { key in
                    group.record(id).withUnsafeBytes { batch.put(logFamily, key, $0) }
                }
                id += 1
            }
            for i in group.keyOrder() {
                var (key, keyID) = group.keys[i]
                withUnsafeBytes(of: keyID.bigEndian) { value in
                    key.withUTF8 { batch.put(keysFamily, UnsafeRawBufferPointer($0), value) }
                }
            }
            for name in group.names {
                batch.put(metaFamily, name.kind == .type ? MetaKey.type(name.name) : MetaKey.stream(name.name), ByteWriter.be32(name.id))
            }
            for seal in group.seals {
                batch.put(metaFamily, MetaKey.segment(seal.first), seal.encoded())
            }
            if let epochHistory {
                batch.put(metaFamily, MetaKey.epochHistory, StoreMeta.encodedEpochHistory(epochHistory))
            }
            batch.put(metaFamily, MetaKey.stats, group.stats.encodedStats())
            batch.put(cf(.index), KeySpace.id(group.first), IndexBlock(first: group.first, entries: group.entries).encoded())
            try db.write(batch, sync: sync)
        }
    }

    func syncWAL() throws(StorageError) {
        try db.syncWAL()
    }

    func dictionaryID(_ kind: DictionaryKind, _ name: String) throws(StorageError) -> UInt32? {
        try dictionaryID(kind == .type ? MetaKey.type(name) : MetaKey.stream(name))
    }
}

// MARK: - The wire form

extension CommitGroup {
    static let formatVersion: UInt8 = 1

    /// The group as bytes, to ship and apply elsewhere (docs/STORAGE.md, "Commit group"):
    /// ```
    /// u8      version (1)
    /// u64be   epoch
    /// u64be   first id
    /// u32be   event count n (ids first ... first + n - 1)
    /// n x     bytes record            (varint length + the RecordCodec record)
    /// varint  key count, then per key: varint (id - first), bytes key
    /// varint  name count, then per name: u8 kind (1 type, 2 stream), u32be id, bytes name
    /// varint  seal count, then per seal: the 44-byte segment manifest entry
    /// 16      stats (edges u64be, next type id u32be, next stream id u32be)
    /// bytes   index block             (the IndexBlock the group writes, with its own checksum)
    /// u32be   CRC-32C of every byte above
    /// ```
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 64 + records.count + recordEnds.count * 3 + entries.count * 6)
        w.bytes.append(Self.formatVersion)
        w.putBE64(epoch)
        w.putBE64(first)
        w.putBE32(UInt32(count))
        var id = first
        while id <= last {
            w.putBytes(record(id))
            id += 1
        }
        w.putVarint(UInt64(keys.count))
        for (key, keyID) in keys {
            w.putVarint(keyID - first)
            w.putString(key)
        }
        w.putVarint(UInt64(names.count))
        for name in names {
            w.bytes.append(name.kind == .type ? 1 : 2)
            w.putBE32(name.id)
            w.putString(name.name)
        }
        w.putVarint(UInt64(seals.count))
        for seal in seals { w.bytes.append(contentsOf: seal.encoded()) }
        w.bytes.append(contentsOf: stats.encodedStats())
        w.putBytes(isEmpty ? [] : IndexBlock(first: first, entries: entries).encoded())
        w.putBE32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// The last id of an encoded group, read from its header alone (unchecked: `decode` checks
    /// everything when it is applied). nil when the bytes are too short to hold a header.
    public static func lastID(encoded bytes: [UInt8]) -> EventID? {
        guard bytes.count >= 1 + 8 + 8 + 4 else { return nil }
        let first = bytes[9..<17].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let count = bytes[17..<21].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard first >= 1, first <= UInt64.max - count else { return nil }
        return first + count - 1
    }

    /// The group `bytes` encode, checked: the checksum, every length, each record's own checksum
    /// (under its id), the index block. Whether it follows the store is the applier's to check.
    public static func decode(_ bytes: [UInt8]) throws(StorageError) -> CommitGroup {
        guard bytes.count >= 4 + 1 + 8 + 8 + 4 + 16 else { throw StorageError(.corruption, "commit group: \(bytes.count) bytes is too short") }
        // Read in place, up to the checksum: a group is up to hundreds of kilobytes, and its
        // records are copied once, into the group.
        guard UInt32(bigEndianBytes: bytes.suffix(4)) == CRC32C.checksum(bytes.dropLast(4)) else { throw StorageError(.corruption, "commit group: checksum mismatch") }
        var r = ByteReader(bytes, end: bytes.count - 4)
        let version = try r.byte()
        guard version == formatVersion else { throw StorageError(.corruption, "commit group: unknown format version \(version)") }
        let epoch = try r.be64()
        let first = try r.be64()
        let count = UInt64(try r.be32())
        guard first >= 1, first <= UInt64.max - count else { throw StorageError(.corruption, "commit group: ids out of range") }
        var group = CommitGroup(epoch: epoch, after: first - 1, meta: .fresh)
        group.records.reserveCapacity(bytes.count)
        group.recordEnds.reserveCapacity(Int(count))
        for offset in 0..<count {
            let record = try r.lengthPrefixed()
            guard RecordCodec.checksumMatches(id: first + offset, record) else {
                throw StorageError(.corruption, "commit group: record \(first + offset) fails its checksum")
            }
            group.records.append(contentsOf: record)
            group.recordEnds.append(group.records.count)
        }
        group.last = first + count - 1
        for _ in 0..<(try r.varint()) {
            let offset = try r.varint()
            guard offset < count else { throw StorageError(.corruption, "commit group: a key names an id outside the group") }
            group.keys.append((try r.string(), first + offset))
        }
        for _ in 0..<(try r.varint()) {
            let kind = try r.byte()
            guard kind == 1 || kind == 2 else { throw StorageError(.corruption, "commit group: unknown dictionary kind \(kind)") }
            let id = try r.be32()
            group.names.append(Name(kind: kind == 1 ? .type : .stream, name: try r.string(), id: id))
        }
        for _ in 0..<(try r.varint()) {
            group.seals.append(try SegmentEntry.decode(Array(try r.bytes(count: 44))))
        }
        group.stats = StoreMeta(epochHistory: [], edges: try r.be64(), nextTypeID: try r.be32(), nextStreamID: try r.be32())
        let block = Array(try r.lengthPrefixed())
        if count > 0 {
            let index = try IndexBlock.decode(first: first, block)
            guard index.entries.count == Int(count) else { throw StorageError(.corruption, "commit group: the index block holds \(index.entries.count) events, not \(count)") }
            group.entries = index.entries
        } else if !block.isEmpty {
            throw StorageError(.corruption, "commit group: an index block for no events")
        }
        guard r.isAtEnd else { throw StorageError(.corruption, "commit group: trailing bytes") }
        return group
    }
}

extension UInt32 {
    /// The value of 4 big-endian bytes.
    init(bigEndianBytes bytes: some Collection<UInt8>) {
        self = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }
}
