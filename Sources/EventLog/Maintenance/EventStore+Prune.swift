/// What a prune did.
public struct PruneResult: Sendable, Hashable {
    /// The store's first id after the prune (as before when nothing could go).
    public var firstID: EventID
    /// The snapshot id the prune was asked to stay below, and the archive's file name.
    public var snapshotID: EventID
    public var snapshot: String
    public var eventsRemoved: UInt64
    public var segmentsRemoved: Int
    /// Database bytes (`diskBytes`) before, and after RocksDB compacted the pruned ranges away.
    public var bytesBefore: UInt64
    public var bytesAfter: UInt64
    /// Why nothing was pruned, when nothing was.
    public var note: String?
}

/// Pruning (docs/OPERATIONS.md, "Pruning below a snapshot"): whole sealed segments at or below a
/// snapshot's id leave the store, which then holds ids from its new first id only. Only whole
/// sealed segments go, so the segment manifest keeps tiling what is left and every remaining
/// record keeps its checksum chain; the keys of pruned events stay, so a retried keyed append of
/// one is still answered as a duplicate.
extension EventStore {
    /// Removes every sealed segment that ends at or below `snapshotID` (the id of the archive
    /// named `snapshot`, a file name, which the caller has written and verified), except one
    /// holding the last event: the log keeps its last id by holding it. One synced write records
    /// the `PrunedPrefix` (with this archive added to the earlier prunes' ones) and removes the
    /// index blocks (rewriting a block that straddles the cut to start at it) and the manifest
    /// entries. Only then do readers see the new first id (a failed write changes nothing), and
    /// only after that do the records go, in bounded batches (`removePrunedRecords`, which the next
    /// writable open finishes if a crash cut it short), so no reader looks for a record being
    /// removed. Then RocksDB compacts the removed ranges.
    ///
    /// Refused while a compaction is under way or asked for by a control event below the cut
    /// (it could never be carried out). The caller runs one maintenance job at a time.
    public func prune(below snapshotID: EventID, snapshot: String) throws(LogError) -> PruneResult {
        guard applier != nil else { throw LogError(.invalidArgument, "the store is open read-only") }
        guard !snapshot.isEmpty, !snapshot.contains("/"), snapshot.utf8.count <= PrunedPrefix.archiveNameBytesMax else {
            throw LogError(.invalidArgument, "prune needs the file name of the archive it prunes below", field: "snapshot")
        }
        let last = lastID
        guard snapshotID >= 1, snapshotID <= last else {
            throw LogError(.invalidArgument, "snapshot id \(snapshotID) is not in this store's log (1...\(last))", field: "snapshot_id")
        }
        let old = firstID
        let segments = try read { () throws(StorageError) in try storage.segments() }
        var result = PruneResult(
            firstID: old, snapshotID: snapshotID, snapshot: snapshot, eventsRemoved: 0, segmentsRemoved: 0,
            bytesBefore: diskBytes(), bytesAfter: 0)
        guard let cut = segments.last(where: { $0.last <= snapshotID && $0.last < last }), cut.last + 1 > old else {
            result.bytesAfter = result.bytesBefore
            result.note = "no whole sealed segment lies between \(old) and \(snapshotID) (segments seal every \(limits.segmentEventsMax) events)"
            return result
        }
        let first = cut.last + 1
        if try read({ () throws(StorageError) in try storage.meta(MetaKey.compactionProgress) }) != nil {
            throw LogError(.conflict, "a compaction is under way; prune after it has finished")
        }
        if let pending = try pendingCompactions().first(where: { $0.control < first }) {
            throw LogError(.conflict, "the compaction asked for by event \(pending.control) has not run here yet; prune after it has")
        }
        let previous = pruned
        let keysBelow = (previous?.keysBelow ?? 0) + (try keyedRecords(from: old, below: first))
        let (types, streams) = index.dictionaryIDs(through: first - 1)
        let prefix = PrunedPrefix(
            firstID: first, edgesBelow: UInt64(index.edges(through: first - 1)), keysBelow: keysBelow,
            typesBelow: types, streamsBelow: streams,
            archives: (previous?.archives ?? []) + [PrunedPrefix.Archive(firstID: first, name: snapshot)])
        try shipping.withLock { _ throws(LogError) in
            // A truncation (on a follower) may have cut the log since the plan was made.
            guard lastID >= first else { throw LogError(.conflict, "the log was cut below \(first) meanwhile; nothing was pruned") }
            try storageCall { () throws(StorageError) in
                let batch = RocksWriteBatch()
                let (indexFamily, metaFamily) = (storage.cf(.index), storage.cf(.meta))
                let blocks = try storage.db.iterator(indexFamily, upper: KeySpace.id(first))
                blocks.seekToFirst()
                while blocks.isValid {
                    let start = blocks.withKey { LogStorage.be64($0, at: 0) }
                    let block = try IndexBlock.decode(first: start, blocks.value)
                    batch.delete(indexFamily, KeySpace.id(start))
                    let end = start + EventID(block.entries.count)
                    if end > first {
                        let kept = IndexBlock(first: first, entries: Array(block.entries[Int(first - start)...]))
                        batch.put(indexFamily, KeySpace.id(first), kept.encoded())
                    }
                    blocks.next()
                }
                try blocks.checkStatus()
                for entry in segments where entry.first < first { batch.delete(metaFamily, MetaKey.segment(entry.first)) }
                batch.put(metaFamily, MetaKey.prunedPrefix, prefix.encoded())
                try storage.db.write(batch, sync: true)
            }
            // The records are all still there: readers switch to the new first id before any goes.
            rewriting { index.prune(below: first) }
            prunedPrefix.withLock { $0 = prefix }
        }
        shippingReaders.withLock { $0.removeAll() }
        try storageCall { () throws(StorageError) in
            try Self.removePrunedRecords(storage, below: first)
            try storage.db.compactRange(storage.cf(.log), start: KeySpace.id(0), limit: KeySpace.id(first))
            try storage.db.compactRange(storage.cf(.index), start: KeySpace.id(0), limit: KeySpace.id(first))
        }
        result.firstID = first
        result.eventsRemoved = first - old
        result.segmentsRemoved = segments.filter { $0.first < first }.count
        result.bytesAfter = diskBytes()
        return result
    }

    /// Deletes the records below `first`, 65,536 per write. Point deletes, not a range
    /// tombstone: the `log` family's memtable takes its keys in ascending order through an insert
    /// hint, which RocksDB's range-deletion table does not honour (it asserts). Returns how many went.
    @discardableResult
    static func removePrunedRecords(_ storage: LogStorage, below first: EventID) throws(StorageError) -> Int {
        let log = storage.cf(.log)
        var removed = 0
        while true {
            let it = try storage.db.iterator(log, upper: KeySpace.id(first), fillCache: false)
            it.seekToFirst()
            let batch = RocksWriteBatch()
            while it.isValid, batch.count < prunedRecordsPerWrite {
                batch.delete(log, it.key)
                it.next()
            }
            try it.checkStatus()
            guard batch.count > 0 else { return removed }
            removed += batch.count
            try storage.db.write(batch, sync: true)
        }
    }

    static let prunedRecordsPerWrite = 65_536

    /// How many records in `from..<below` carry a key (flag bit 0 of the record's second byte).
    private func keyedRecords(from: EventID, below: EventID) throws(LogError) -> UInt64 {
        try read { () throws(StorageError) -> UInt64 in
            let it = try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(from), upper: KeySpace.id(below), fillCache: false)
            it.seekToFirst()
            var keyed: UInt64 = 0
            while it.isValid {
                if it.withValue({ $0.count > 1 && $0[1] & RecordCodec.Flag.key != 0 }) { keyed += 1 }
                it.next()
            }
            try it.checkStatus()
            return keyed
        }
    }
}
