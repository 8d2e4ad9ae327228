/// One commit group being assembled by the writer: the WriteBatch plus the tentative state it
/// implies. Client batches are staged one at a time between a save point and either a pop
/// (keep) or a rollback (drop), so a rejected batch leaves nothing behind: no id consumed, no
/// key, no dictionary entry.
///
/// Not thread-safe: lives on the stager thread only.
struct GroupStage {
    /// The writer's one batch, empty when a group starts: reusing it keeps its buffer (hundreds
    /// of kilobytes for a large group) instead of allocating and faulting in a new one per group.
    let batch: RocksWriteBatch
    var lastID: EventID
    var meta: StoreMeta
    var segment: OpenSegment
    /// Events staged in this group under a key, for duplicates and `parent_keys` inside a group.
    var keyed: [String: Event] = [:]
    /// Type and stream names first used in this group, with the ids allocated for them.
    var newNames: [DictionaryKind: [String: UInt32]] = [:]
    let timeUnixNano: Int64
    /// Index entries of the events staged so far, in id order: the group's `IndexBlock`.
    var entries: [IndexBlock.Entry] = []

    /// Undo information for the client batch being staged.
    struct Mark {
        var lastID: EventID
        var meta: StoreMeta
        var segment: OpenSegment
        var keys: [String] = []
        var names: [(DictionaryKind, String)] = []
        var entries = 0
    }

    var mark: Mark

    init(batch: RocksWriteBatch, lastID: EventID, meta: StoreMeta, segment: OpenSegment, timeUnixNano: Int64) {
        precondition(batch.count == 0, "a commit group starts with an empty write batch")
        self.batch = batch
        self.lastID = lastID
        self.meta = meta
        self.segment = segment
        self.timeUnixNano = timeUnixNano
        mark = Mark(lastID: lastID, meta: meta, segment: segment)
    }

    var isEmpty: Bool { lastID == mark.lastID && batch.count == 0 }

    mutating func begin() {
        mark = Mark(lastID: lastID, meta: meta, segment: segment, entries: entries.count)
        batch.setSavePoint()
    }

    mutating func keep() throws(StorageError) {
        try batch.popSavePoint()
    }

    mutating func rollback() throws(StorageError) {
        try batch.rollbackToSavePoint()
        lastID = mark.lastID
        meta = mark.meta
        segment = mark.segment
        entries.removeLast(entries.count - mark.entries)
        for key in mark.keys { keyed.removeValue(forKey: key) }
        for (kind, name) in mark.names { newNames[kind]?.removeValue(forKey: name) }
    }
}

/// The two name dictionaries: type names and stream names, whose ids the index blocks hold.
enum DictionaryKind: Hashable {
    case type, stream
}

extension StoreMeta {
    /// Hands out the next dictionary id of `kind`.
    mutating func allocate(_ kind: DictionaryKind) -> UInt32 {
        switch kind {
        case .type:
            defer { nextTypeID += 1 }
            return nextTypeID
        case .stream:
            defer { nextStreamID += 1 }
            return nextStreamID
        }
    }
}
