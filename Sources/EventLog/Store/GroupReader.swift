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

    /// Reads the groups after `after`, in order, up to `upTo` (a group's last id), handing each
    /// to `body` until it returns false or the log ends. Throws when `after + 1` is not where a
    /// group starts.
    ///
    /// One iterator reads the records of the whole stretch: one per group cost a seek into every
    /// level each time. It reads outside the block cache: a follower catching up reads each
    /// block once and would evict what queries need, and one that keeps up reads the memtable.
    /// It lives for this call only, so no RocksDB snapshot is pinned between pulls and none can
    /// outlive the store.
    mutating func read(upTo last: EventID, while body: (CommitGroup) -> Bool) throws(StorageError) {
        let end = min(last, index.lastID)
        guard after < end else { return }
        let records = try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(after + 1), upper: KeySpace.id(end + 1), fillCache: false)
        records.seekToFirst()
        while after < end, let group = try next(records, end: end), body(group) {}
    }

    /// The group that starts at `after + 1`, its records read from `records` (positioned there);
    /// nil when it would reach past `end`.
    private mutating func next(_ records: RocksIterator, end: EventID) throws(StorageError) -> CommitGroup? {
        let first = after + 1
        guard let block = try storage.db.get(storage.cf(.index), KeySpace.id(first)) else {
            throw StorageError(.invalidArgument, "no commit group starts at id \(first)")
        }
        let entries = try IndexBlock.decode(first: first, block).entries
        let groupLast = first + EventID(entries.count) - 1
        guard groupLast <= end else { return nil }
        var group = CommitGroup(epoch: 0, after: after, meta: .fresh)
        var id = first
        var epoch: UInt64?
        for entry in entries {
            guard records.isValid, records.withKey({ LogStorage.be64($0, at: 0) }) == id else {
                throw StorageError(.corruption, "log: record \(id) of the group at \(first) is missing")
            }
            // Read in place: the record is copied once here, into the group.
            let parsed = records.withValue { record -> (epoch: UInt64, key: String?)? in
                guard let parsed = RecordCodec.epochAndKey(of: record) else { return nil }
                group.append(record: record, entry: entry)
                return parsed
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
            records.next()
        }
        try records.checkStatus()
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
