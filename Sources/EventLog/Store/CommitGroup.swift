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
    /// `edges`, `nextTypeID`, `nextStreamID` after the group (the `stats` value).
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

    public static func == (a: CommitGroup, b: CommitGroup) -> Bool {
        a.epoch == b.epoch && a.first == b.first && a.last == b.last && a.records == b.records && a.recordEnds == b.recordEnds
            && a.keys.elementsEqual(b.keys, by: { $0 == $1 }) && a.entries == b.entries && a.names == b.names && a.seals == b.seals
            && a.stats == b.stats
    }
}

extension LogStorage: CommitStorage {
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
            for (key, keyID) in group.keys {
                var key = key
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
