import Foundation
import Synchronization

/// What replication asks of a store (docs/REPLICATION.md): a leader ships its commit groups as
/// storage holds them; a follower applies them verbatim, and can drop a tail its leader does not
/// have; promotion starts a new term (epoch) with a sequencer, and fencing ends one.
extension EventStore {
    /// What the store does now: nil when read-only.
    public var role: StoreRole? {
        guard applier != nil else { return nil }
        if sequencer.withLock({ $0 }) != nil { return .leader }
        return fencedBy.load(ordering: .acquiring) > 0 ? .fenced : .follower
    }

    /// Every event up to this id is durable on this node.
    public var durableID: EventID { applier?.durableID ?? lastID }

    /// The epoch history: (epoch, first id of that epoch), ascending; epochs only grow.
    public var epochHistory: [(epoch: UInt64, firstID: EventID)] { writerMeta.epochHistory }

    /// The event type of a promotion's control event: the first event of every epoch after the
    /// first, so each epoch is in the log every node ships.
    public static let epochEventType = "banyan.epoch"

    // MARK: leader

    /// The commit groups after `after` (which must end a group, or be 0), encoded for shipping:
    /// at least one if there is any, and no more once `bytesMax` is reached. Reads storage
    /// (`GroupReader`), so any stretch of the log can be shipped.
    public func shippableGroups(after: EventID, bytesMax: Int) throws(LogError) -> [[UInt8]] {
        let last = lastID
        guard after < last else { return [] }
        try checkNotPruned(after: after)
        var reader = try storageCall { () throws(StorageError) -> GroupReader in
            if let cached = shippingReaders.withLock({ $0.removeValue(forKey: after) }) { return cached }
            return try GroupReader(storage: storage, index: index, after: after)
        }
        var groups: [[UInt8]] = []
        var bytes = 0
        try storageCall { () throws(StorageError) in
            try reader.read(upTo: last) { group in
                let encoded = group.encoded()
                bytes += encoded.count
                groups.append(encoded)
                return bytes < bytesMax
            }
        }
        shippingReaders.withLock { readers in
            if readers.count >= Self.shippingReadersMax { readers.removeAll() }
            readers[reader.after] = reader
        }
        return groups
    }

    /// Readers kept for followers that come back where they left off.
    static let shippingReadersMax = 64

    /// Where epoch `epoch` ends in this log (Kafka's OffsetsForLeaderEpoch): the largest epoch of
    /// the history not above `epoch`, and the last id written in it (the id before the next
    /// epoch's first, or the last id for the current epoch). A follower whose latest epoch is
    /// `epoch` keeps its log up to `endID` and drops the rest. (0, 0) when no epoch qualifies.
    public func epochEnd(for epoch: UInt64) -> (epoch: UInt64, endID: EventID) {
        Self.epochEnd(for: epoch, history: epochHistory, lastID: lastID)
    }

    static func epochEnd(for epoch: UInt64, history: [(epoch: UInt64, firstID: EventID)], lastID: EventID) -> (epoch: UInt64, endID: EventID) {
        guard let i = history.lastIndex(where: { $0.epoch <= epoch }) else { return (0, 0) }
        let end = i + 1 < history.count ? history[i + 1].firstID - 1 : lastID
        return (history[i].epoch, min(end, lastID))
    }

    /// Where this log stops agreeing with a leader's, given the leader's answer `leaderEnd` to
    /// `epochEnd(for: self.epoch)`: the id to truncate after, or nil when there is nothing to
    /// drop. Kafka's rule (KIP-279): when this log has the epoch the leader answered about, keep
    /// up to its end as the leader records it, and no further than this log records it; that
    /// settles it. When this log does not have that epoch, nothing after this log's end of the
    /// epochs before it can be trusted: keep up to there, then ask again about this log's new
    /// latest epoch (the caller sees `epoch` differ from `leaderEnd.epoch`). Each such round
    /// drops at least one epoch.
    public func divergence(leaderEnd: (epoch: UInt64, endID: EventID)) -> EventID? {
        Self.divergence(history: epochHistory, lastID: lastID, leaderEnd: leaderEnd)
    }

    static func divergence(history: [(epoch: UInt64, firstID: EventID)], lastID: EventID, leaderEnd: (epoch: UInt64, endID: EventID)) -> EventID? {
        let mine = epochEnd(for: leaderEnd.epoch, history: history, lastID: lastID)
        let keep = mine.epoch == leaderEnd.epoch ? min(leaderEnd.endID, mine.endID) : mine.endID
        return keep < lastID ? keep : nil
    }

    /// How epoch `epoch` began in this log: its first id and the CRC-32C of that event's record
    /// (the `banyan.epoch` event, which names the promoted node and its time). nil when the
    /// history has no such epoch.
    public func epochStart(_ epoch: UInt64) throws(LogError) -> (firstID: EventID, crc: UInt32)? {
        guard let entry = epochHistory.first(where: { $0.epoch == epoch }), entry.firstID <= lastID else { return nil }
        guard let record = try storageCall({ () throws(StorageError) in try storage.record(entry.firstID) }) else { return nil }
        return (entry.firstID, CRC32C.update(0, record))
    }

    /// Where this log stops agreeing with a leader's when both name epoch `leaderStart.epoch`
    /// but it began differently in each: two nodes were promoted to the same epoch (without
    /// consensus an operator can do that: promoting a follower that never heard of the newest
    /// epoch). Epoch numbers alone would then let a follower keep events the leader never had.
    /// Returns the id to truncate after (before the epoch began in either log); the caller
    /// then reconciles again against the epoch before. nil when the epoch began the same way,
    /// or this log does not have it.
    public func conflictingEpoch(_ leaderStart: (epoch: UInt64, firstID: EventID, crc: UInt32)) throws(LogError) -> EventID? {
        guard let mine = try epochStart(leaderStart.epoch) else { return nil }
        guard mine.firstID != leaderStart.firstID || mine.crc != leaderStart.crc else { return nil }
        return min(mine.firstID, leaderStart.firstID) - 1
    }

    // MARK: follower

    /// The highest id this node knows was held durably by at least one follower: what its leader
    /// last said (`noteConfirmed`), or, on a node that was promoted, at least everything it held
    /// then. Kept in `meta` (`confirmed_id`, this node's own: it is not in the groups shipped),
    /// so it survives restarts. Promoting a node whose log ends before it would lose writes
    /// acknowledged with replicas, and is refused (`promote`).
    public var confirmedID: EventID { confirmedMark.load(ordering: .acquiring) }

    /// A checksum of everything replication copies: every key and value of every family except
    /// this node's own (`confirmed_id`). Two nodes that hold the same log have the same digest,
    /// byte for byte (tests and the simulator compare nodes with it). Reads the whole store.
    public func replicatedDigest() throws(LogError) -> (entries: Int, crc: UInt64) {
        var entries = 0
        var keys: UInt32 = 0
        var values: UInt32 = 0
        try storageCall { () throws(StorageError) in
            for family in KeySpace.Family.allCases {
                let it = try storage.db.iterator(storage.cf(family))
                it.seekToFirst()
                while it.isValid {
                    let key = it.key
                    if !(family == .meta && MetaKey.nodeLocal.contains(key)) {
                        entries += 1
                        keys = CRC32C.update(keys, [UInt8(family.rawValue)] + ByteWriter.be32(UInt32(key.count)) + key)
                        values = CRC32C.update(values, ByteWriter.be32(UInt32(it.value.count)) + it.value)
                    }
                    it.next()
                }
                try it.checkStatus()
            }
        }
        return (entries, UInt64(keys) << 32 | UInt64(values))
    }

    /// Raises `confirmedID` to `id` (the leader's word); written with the next sync.
    public func noteConfirmed(_ id: EventID) throws(LogError) {
        try setConfirmed(id, lowering: false)
    }

    private func setConfirmed(_ id: EventID, lowering: Bool) throws(LogError) {
        guard applier != nil, id > confirmedID || (lowering && id != confirmedID) else { return }
        try storageCall { () throws(StorageError) in
            let batch = RocksWriteBatch()
            batch.put(storage.cf(.meta), MetaKey.confirmedID, ByteWriter.be64(id))
            try storage.db.write(batch, sync: false)
        }
        confirmedMark.store(id, ordering: .releasing)
    }

    /// Applies one group shipped by the leader (its encoded bytes) and returns its last id. It
    /// must follow the last applied id; nothing changes when it does not, or fails its checks.
    @discardableResult
    public func applyShipped(_ bytes: [UInt8]) throws(LogError) -> EventID {
        guard let applier else { throw LogError(.invalidArgument, "the store is open read-only") }
        let group = try storageCall { () throws(StorageError) in try CommitGroup.decode(bytes) }
        func apply() throws(LogError) {
            try shipping.withLock { _ throws(LogError) in
                guard !closed.load(ordering: .acquiring) else { throw LogError(.closed, "the store is closed") }
                guard sequencer.withLock({ $0 }) == nil else { throw LogError(.conflict, "this node is the leader; it applies no shipped groups") }
                try applier.apply(group, wantsSync: false)
            }
        }
        do {
            try apply()
        } catch {
            // Refused after failed fsyncs: a follower has no idle timer to sync again (a
            // leader's committer has), and the `Follower` service syncs only after an applied
            // pull, so a refused apply tries the sync (through `syncShipped`, so that follower
            // syncs run one at a time) and then itself once more. Without it, a disk that
            // recovers would leave the follower refusing until restarted.
            guard shipping.withLock({ _ in applier.refusal != nil }) else { throw error }
            syncShipped()
            try apply()
        }
        return group.last
    }

    /// Makes every shipped group applied so far durable; returns the durable id. The fsync runs
    /// outside the shipping lock, so groups can be applied meanwhile (a follower catching up
    /// applies its next pull while the last one is synced); those it does not cover. `close()`
    /// waits for a sync under way (`followerSync`) and none starts after it.
    @discardableResult
    public func syncShipped() -> EventID {
        guard let applier else { return lastID }
        return followerSync.withLock { _ in
            guard !closed.load(ordering: .acquiring) else { return applier.durableID }
            let begun = shipping.withLock { _ in
                sequencer.withLock({ $0 }) == nil && !applier.isDurable ? applier.beginSync() : nil
            }
            guard let begun else { return applier.durableID }
            let error = applier.performSync()
            // Promoted meanwhile (even if that term already ended): `finishSync` ignores it.
            shipping.withLock { _ in applier.finishSync(begun, error: error) }
            return applier.durableID
        }
    }

    /// Drops every event after `last` (a tail the leader does not have: see `divergence`), with
    /// everything derived from them: records, index blocks, keys, dictionary names first used
    /// there, sealed-segment entries reaching past `last`, the counters and the epoch history, in
    /// one synced write; then `LogIndex`, the open segment and the last id. Only a follower or a
    /// fenced leader truncates; `verify` is clean after. Returns how many events were dropped.
    @discardableResult
    public func truncate(after last: EventID) throws(LogError) -> Int {
        guard let applier else { throw LogError(.invalidArgument, "the store is open read-only") }
        return try shipping.withLock { _ throws(LogError) -> Int in
            guard sequencer.withLock({ $0 }) == nil else { throw LogError(.conflict, "a leader does not truncate its log") }
            let old = applier.lastApplied
            guard last < old else { return 0 }
            // A pruned store keeps at least its first event: with none, it would lose its last id.
            guard index.firstID == 1 || last >= index.firstID else {
                throw LogError(.pruned, "cannot cut the log after \(last): this store was pruned below \(index.firstID) and must keep an event from there; start this node afresh from a snapshot")
            }
            if !applier.isDurable { applier.syncNow() }
            let meta = applier.appliedMeta
            let (types, streams) = index.dictionaryIDs(through: last)
            var kept = meta
            kept.edges = UInt64(index.edges(through: last))
            kept.nextTypeID = types + 1
            kept.nextStreamID = streams + 1
            let history = meta.epochHistory.enumerated().filter { $0.offset == 0 || $0.element.firstID <= last }.map(\.element)
            kept.epochHistory = history
            let batch = try storageCall { () throws(StorageError) -> RocksWriteBatch in
                let batch = RocksWriteBatch()
                let (log, indexFamily, keys, metaFamily) = (storage.cf(.log), storage.cf(.index), storage.cf(.keys), storage.cf(.meta))
                // Records, and the keys and names they introduced.
                let it = try storage.db.iterator(log, lower: KeySpace.id(last + 1))
                it.seekToFirst()
                var removedTypes = Set<String>()
                var removedStreams = Set<String>()
                while it.isValid {
                    let key = it.key
                    let id = key.be64(at: 0)
                    let event = try RecordCodec.decode(id: id, it.value)
                    if let k = event.key, try storage.id(forKey: k) == id { batch.delete(keys, Array(k.utf8)) }
                    if let t = try storage.dictionaryID(MetaKey.type(event.type)), t > types { removedTypes.insert(event.type) }
                    if let s = event.stream, let sid = try storage.dictionaryID(MetaKey.stream(s)), sid > streams { removedStreams.insert(s) }
                    batch.delete(log, key)
                    it.next()
                }
                try it.checkStatus()
                for name in removedTypes { batch.delete(metaFamily, MetaKey.type(name)) }
                for name in removedStreams { batch.delete(metaFamily, MetaKey.stream(name)) }
                // Index blocks: those starting after `last` go; one straddling it keeps its head.
                let blocks = try storage.db.iterator(indexFamily)
                blocks.seekForPrev(KeySpace.id(last + 1))
                if !blocks.isValid { blocks.seekToFirst() }
                while blocks.isValid {
                    let first = blocks.withKey { LogStorage.be64($0, at: 0) }
                    if first > last {
                        batch.delete(indexFamily, KeySpace.id(first))
                    } else {
                        var block = try IndexBlock.decode(first: first, blocks.value)
                        let count = Int(last - first + 1)
                        if block.entries.count > count {
                            block.entries.removeLast(block.entries.count - count)
                            batch.put(indexFamily, KeySpace.id(first), block.encoded())
                        }
                    }
                    blocks.next()
                }
                try blocks.checkStatus()
                for entry in try storage.segments() where entry.last > last {
                    batch.delete(metaFamily, MetaKey.segment(entry.first))
                }
                batch.put(metaFamily, MetaKey.stats, kept.encodedStats())
                batch.put(metaFamily, MetaKey.epochHistory, kept.encodedEpochHistory())
                // A compaction whose control event is cut off is the leader's to ask for again
                // (or not): the next control event may get an id at or below the one cut.
                if compactionDone > last { batch.put(metaFamily, MetaKey.compactionDone, ByteWriter.be64(last)) }
                if let progress = try storage.meta(MetaKey.compactionProgress), progress.count == 16, progress.be64(at: 0) > last {
                    batch.delete(metaFamily, MetaKey.compactionProgress)
                }
                return batch
            }
            try rewriting { () throws(LogError) in
                try storageCall { () throws(StorageError) in try storage.db.write(batch, sync: true) }
                shippingReaders.withLock { $0.removeAll() }
                index.truncate(after: last)
                let segment = try Recovery.openSegment(storage, firstID: index.firstID, lastID: last)
                applier.reset(lastID: last, meta: kept, segment: segment)
            }
            truncationCuts.withLock { t in
                t.count += 1
                t.cuts.append(last)
                if t.cuts.count > Self.truncationsKept { t.cuts.removeFirst() }
            }
            return Int(old - last)
        }
    }

    // MARK: roles

    /// How many truncations `truncationCuts` remembers. Each needs a change of leader, so this
    /// covers any reader that looks at least once per leader change.
    static let truncationsKept = 1_024

    /// Truncations since open, for a reader that last looked when there had been `seen`: the
    /// count now, and the lowest id cut after since then (nil: none; 0 when more happened than
    /// are remembered, so the reader starts again from the beginning).
    public func truncation(since seen: Int) -> (count: Int, cut: EventID?) {
        truncationCuts.withLock { t in
            let new = t.count - seen
            guard new > 0 else { return (t.count, nil) }
            guard new <= t.cuts.count else { return (t.count, 0) }
            return (t.count, t.cuts.suffix(new).min())
        }
    }

    /// Makes this follower the leader of a new term: the next epoch above every one it knows of
    /// (`epochAtLeast`: one learned from elsewhere), begun with a `banyan.epoch` event written
    /// and synced before this returns, so the epoch is in the log followers ship. Returns the
    /// new epoch. Refused on a leader, and on a fenced leader (it must rejoin as a follower and
    /// drop its unreplicated tail first).
    @discardableResult
    public func promote(leader: String, epochAtLeast: UInt64 = 0, allowingLoss: Bool = false) async throws -> UInt64 {
        guard let applier else { throw LogError(.invalidArgument, "the store is open read-only") }
        let confirmed = confirmedID
        guard allowingLoss || lastID >= confirmed else {
            throw LogError(
                .conflict,
                "this node has applied up to id \(lastID), but writes up to id \(confirmed) were confirmed by a replica: promoting it would lose them; promote a node that has them (or force it)")
        }
        let epoch = try shipping.withLock { _ throws(LogError) -> UInt64 in
            try sequencer.withLock { slot throws(LogError) -> UInt64 in
                if let current = slot { throw LogError(.conflict, "this node is already the leader (epoch \(current.epoch))") }
                // `close()` sets the flag before it takes this lock to find the sequencer to close.
                guard !closed.load(ordering: .acquiring) else { throw LogError(.closed, "the store is closing") }
                let fenced = fencedBy.load(ordering: .acquiring)
                guard fenced == 0 else {
                    throw LogError(.conflict, "this node was fenced by epoch \(fenced); restart it as a follower of the new leader (--follow) instead")
                }
                if !applier.isDurable { applier.syncNow() }
                applier.newOwner()
                let meta = applier.appliedMeta
                let epoch = max(meta.currentEpoch, epochAtLeast) + 1
                let writer = Sequencer(
                    applier: applier, limits: options.limits, now: options.clock, observer: options.observer,
                    lastID: applier.lastApplied, meta: meta, segment: applier.segment, epoch: epoch)
                writer.start()
                slot = writer
                return epoch
            }
        }
        let payload = JSONValue.members(["epoch": .int(epoch), "leader": .string(leader)])
        _ = try await append([AppendRequest(type: Self.epochEventType, message: "epoch \(epoch) begins", payload: payload)], durability: .group)
        // Anything this node held may have been confirmed by it as a follower: its successors
        // must not be promoted without it. After a forced promotion, what it lacked is gone
        // from this lineage, and the watermark says so.
        try setConfirmed(lastID, lowering: allowingLoss)
        return epoch
    }

    /// Ends this leader's term because epoch `newEpoch` superseded it: no write is acknowledged
    /// after this returns (queued ones fail with `notLeader`), and the store stays readable.
    /// Returns false when the store is not a leader or `newEpoch` does not supersede its epoch.
    @discardableResult
    public func fence(by newEpoch: UInt64) -> Bool {
        let ended = endTerm { current in newEpoch > current.epoch ? newEpoch : nil }
        guard ended else { return false }
        fencedBy.store(newEpoch, ordering: .releasing)
        return true
    }

    /// Ends the term of the sequencer in the slot when `supersededBy` names the epoch that ends
    /// it (nil: keep it): it is marked fenced and moved to `retiring` under the slot's lock (so a
    /// racing `close()` finds it and cannot commit its queue), then closed outside the lock, since
    /// closing waits for its threads. False when there was none to end.
    func endTerm(supersededBy: (Sequencer) -> UInt64?) -> Bool {
        let writer = sequencer.withLock { slot -> Sequencer? in
            guard let current = slot, let newEpoch = supersededBy(current) else { return nil }
            slot = nil
            current.markFenced(by: newEpoch)
            retiring.withLock { $0[ObjectIdentifier(current)] = current }
            return current
        }
        guard let writer else { return false }
        writer.close()
        sequencer.withLock { _ in _ = retiring.withLock { $0.removeValue(forKey: ObjectIdentifier(writer)) } }
        return true
    }
}

extension EventStore {
    /// Ends this leader's term without a newer epoch known (cluster mode: its lease was not
    /// confirmed in time): as `fence`, no write is acknowledged after this returns, but the store
    /// is a follower at once, to follow whoever leads next. False when it was not leading.
    @discardableResult
    public func stepDown() -> Bool {
        endTerm { current in current.epoch + 1 }
    }

    /// A fenced node becomes a follower again (cluster mode: the new leader is known); its
    /// follower reconciles the log with the new leader before it applies anything.
    public func rejoin() {
        fencedBy.store(0, ordering: .releasing)
    }
}

/// What a writable store does.
public enum StoreRole: String, Sendable {
    /// Appends through its sequencer (and ships its log to followers).
    case leader
    /// Applies the commit groups its leader ships, verbatim; refuses appends.
    case follower
    /// Was the leader until a higher epoch superseded it: refuses appends, serves reads.
    case fenced
}
