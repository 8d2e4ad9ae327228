/// Reads the log's commit groups back from storage, exactly as they were applied, so a leader can
/// ship any stretch of its log without keeping groups in memory.
///
/// Every part of a group is in storage or derivable from it: the index block (keyed by the
/// group's first id) says which events it holds; the records are in `log` (and carry the epoch
/// and key); dictionary ids are allocated in order as events first use a name, so the names new
/// in a group are the ids it uses above every id used before it, in the order its events use
/// them; the seals are the manifest entries ending inside the group; and the counters after it
/// are the edges so far (`LogIndex`) and one past the highest dictionary ids used so far.
/// `GroupReaderTests` checks reconstruction against what the applier wrote, group for group.
struct GroupReader {
    let storage: LogStorage
    let index: LogIndex
    /// The last id of the groups read so far (where the next group starts, less one).
    private(set) var after: EventID
    private var maxTypeID: UInt32 = 0
    private var maxStreamID: UInt32 = 0
    private var typeNames: [UInt32: String] = [:]
    private var streamNames: [UInt32: String] = [:]
    private var seals: [SegmentEntry] = []

    /// A reader of the groups after `after`, which must be the last id of a group (or 0).
    init(storage: LogStorage, index: LogIndex, after: EventID) throws(StorageError) {
        self.storage = storage
        self.index = index
        self.after = after
        (maxTypeID, maxStreamID) = index.dictionaryIDs(through: after)
    }

    /// An iterator over the records of consecutive groups, up to `end`: one per stretch read
    /// instead of one per group, which cost a seek into every level each time. The caller keeps
    /// it for the calls of one stretch and then lets it go, with the RocksDB snapshot it pins.
    struct Scan {
        fileprivate let iterator: RocksIterator
        fileprivate let end: EventID
        /// The id the iterator is at.
        fileprivate var at: EventID
    }

    /// The group that starts at `after + 1`, if the log has it (up to `upTo`); nil at the end.
    /// Throws when `after + 1` is not where a group starts. `scan`: where the previous call left
    /// off reading records (nil to start afresh).
    mutating func next(upTo last: EventID, scan: inout Scan?) throws(StorageError) -> CommitGroup? {
        let first = after + 1
        guard first <= min(last, index.lastID) else { return nil }
        guard let block = try storage.db.get(storage.cf(.index), KeySpace.id(first)) else {
            throw StorageError(.invalidArgument, "no commit group starts at id \(first)")
        }
        let entries = try IndexBlock.decode(first: first, block).entries
        let groupLast = first + EventID(entries.count) - 1
        var group = CommitGroup(epoch: 0, after: after, meta: .fresh)
        let it: RocksIterator
        if let scan, scan.at == first, scan.end >= groupLast {
            it = scan.iterator
        } else {
            let end = max(groupLast, min(last, index.lastID))
            // Outside the block cache: a follower catching up reads each block once, and would
            // evict what reads need; one that keeps up reads the memtable.
            it = try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(first), upper: KeySpace.id(end + 1), fillCache: false)
            it.seekToFirst()
            scan = Scan(iterator: it, end: end, at: first)
        }
        scan?.at = 0  // unknown until the whole group is read
        var id = first
        var epoch: UInt64?
        for entry in entries {
            guard it.isValid, it.withKey({ LogStorage.be64($0, at: 0) }) == id else {
                throw StorageError(.corruption, "log: record \(id) of the group at \(first) is missing")
            }
            // Read in place: the record is copied once, into the group.
            let parsed = it.withValue { record in
                RecordCodec.epochAndKey(of: record).map { parsed in
                    group.append(record: record, entry: entry)
                    return parsed
                }
            }
            guard let (recordEpoch, key) = parsed, epoch == nil || epoch == recordEpoch else {
                throw StorageError(.corruption, "log: record \(id) is malformed or of another epoch than its group")
            }
            epoch = recordEpoch
            if let key { group.keys.append((key, id)) }
            if entry.type > maxTypeID {
                maxTypeID = entry.type
                group.names.append(.init(kind: .type, name: try name(.type, entry.type), id: entry.type))
            }
            if entry.stream > maxStreamID {
                maxStreamID = entry.stream
                group.names.append(.init(kind: .stream, name: try name(.stream, entry.stream), id: entry.stream))
            }
            id += 1
            it.next()
        }
        try it.checkStatus()
        scan?.at = id
        group.epoch = epoch ?? 0
        if seals.isEmpty || seals.last.map({ $0.last < groupLast }) == true { seals = try storage.segments() }
        group.seals = seals.filter { $0.last >= first && $0.last <= groupLast }
        group.stats = StoreMeta(
            epochHistory: [], edges: UInt64(index.edges(through: groupLast)), nextTypeID: maxTypeID + 1, nextStreamID: maxStreamID + 1)
        after = groupLast
        return group
    }

    /// The name behind a dictionary id (read once per kind, the whole dictionary).
    private mutating func name(_ kind: DictionaryKind, _ id: UInt32) throws(StorageError) -> String {
        if kind == .type, typeNames.isEmpty { typeNames = try storage.dictionary(.type) }
        if kind == .stream, streamNames.isEmpty { streamNames = try storage.dictionary(.stream) }
        if let name = kind == .type ? typeNames[id] : streamNames[id] { return name }
        // Written after the dictionary was read: read it again.
        if kind == .type { typeNames = try storage.dictionary(.type) } else { streamNames = try storage.dictionary(.stream) }
        guard let name = kind == .type ? typeNames[id] : streamNames[id] else {
            throw StorageError(.corruption, "meta: no \(kind == .type ? "type" : "stream") has dictionary id \(id)")
        }
        return name
    }
}

extension LogStorage {
    /// A whole dictionary, by id.
    func dictionary(_ kind: DictionaryKind) throws(StorageError) -> [UInt32: String] {
        let prefix = kind == .type ? MetaKey.typePrefix : MetaKey.streamPrefix
        let it = try db.iterator(cf(.meta), lower: prefix, upper: KeySpace.successor(ofPrefix: prefix))
        it.seekToFirst()
        var names: [UInt32: String] = [:]
        while it.isValid {
            let key = it.key
            var r = ByteReader(it.value)
            names[try r.be32()] = String(decoding: key.dropFirst(prefix.count), as: UTF8.self)
            it.next()
        }
        try it.checkStatus()
        return names
    }
}
