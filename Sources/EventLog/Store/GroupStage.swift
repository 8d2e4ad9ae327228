/// One commit group being assembled by the sequencer: the `CommitGroup` plus the tentative
/// state it implies. Client batches are staged one at a time after a mark and either kept or
/// rolled back to the mark, so a rejected batch leaves nothing behind: no id consumed, no key,
/// no dictionary entry.
///
/// Not thread-safe: lives on the stager thread only.
struct GroupStage {
    var group: CommitGroup
    var meta: StoreMeta
    var segment: OpenSegment
    /// The keys of `group.keys`, for duplicates and `parent_keys` inside a group. Positions, not
    /// events: a duplicate decodes its event from the group's record, which is rare, while every
    /// keyed event is put here (and copying events was a tenth of the stager's time on keyed
    /// ingest).
    var keyed = StagedKeys()
    /// The keyed events of the client batches this group was formed from: the most keys it can get.
    let keysMax: Int
    /// Type and stream names first used in this group, with the ids allocated for them.
    var newNames: [DictionaryKind: [String: UInt32]] = [:]
    let timeUnixNano: Int64

    /// Undo information for the client batch being staged.
    struct Mark {
        var group: CommitGroup.Mark
        var meta: StoreMeta
        var segment: OpenSegment
        var names: [(DictionaryKind, String)] = []
    }

    var mark: Mark

    init(lastID: EventID, meta: StoreMeta, segment: OpenSegment, epoch: UInt64, timeUnixNano: Int64, keysMax: Int) {
        self.keysMax = keysMax
        group = CommitGroup(epoch: epoch, after: lastID, meta: meta)
        self.meta = meta
        self.segment = segment
        self.timeUnixNano = timeUnixNano
        mark = Mark(group: group.mark, meta: meta, segment: segment)
    }

    /// The last id, this group's events included.
    var lastID: EventID { group.last }
    var isEmpty: Bool { group.isEmpty }

    mutating func begin() {
        mark = Mark(group: group.mark, meta: meta, segment: segment)
    }

    mutating func rollback() {
        for position in (mark.group.keys..<group.keys.count).reversed() {
            keyed.removeNewest(position: position, hash: KeyFilter.hash(of: group.keys[position].key))
        }
        group.rollback(to: mark.group)
        meta = mark.meta
        segment = mark.segment
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
