import Logging
import Synchronization

/// Where commit groups are written: the seam between the write path and its storage, so the
/// sequencer and the applier can run on RocksDB (`LogStorage`) or in memory (tests, the
/// simulator).
protocol CommitStorage: AnyObject, Sendable {
    /// Writes `group` in one atomic write (`epochHistory`: the store's new epoch history, when
    /// the group starts an epoch); `sync`: durable before it returns.
    func write(_ group: CommitGroup, epochHistory: [(epoch: UInt64, firstID: EventID)]?, sync: Bool) throws(StorageError)
    /// Makes every write so far durable.
    func syncWAL() throws(StorageError)
    // What the sequencer reads to stage a group: keys, the events they name, dictionary ids.
    func id(forKey key: String) throws(StorageError) -> EventID?
    func event(_ id: EventID) throws(StorageError) -> Event?
    func dictionaryID(_ kind: DictionaryKind, _ name: String) throws(StorageError) -> UInt32?
    /// Calls `body` with every key of the `keys` family while `proceed` says so (checked every
    /// few thousand keys), for the sequencer's key filter.
    func forEachKey(while proceed: () -> Bool, _ body: (UnsafeRawBufferPointer) -> Void) throws(StorageError)
    /// About how many keys the `keys` family holds (to size that filter).
    func keyCountEstimate() -> Int
    /// Whether the sequencer's key filter cannot tell new keys now (it is being built, is off or
    /// gave up), so keyed appends look them up here: storage may then make a lookup that misses
    /// cheaper, at some cost per key written.
    func sequencerLooksUpKeys(_ on: Bool) throws(StorageError)
}

/// Applies commit groups, in order, to storage: one atomic write per group (fsynced per the
/// durability policy), then the in-memory `LogIndex`, then the new last id is published and its
/// waiters woken. The leader feeds it the groups its sequencer stages; with replication, a
/// follower feeds it the leader's groups verbatim, and it derives everything else the same way
/// on both (meta, the open segment), so both stores hold the same bytes.
///
/// Thread-safety: `apply`, `syncNow`, `beginSync`, `finishSync` and the durability state belong
/// to one caller at a time (the writer's commit owner; on a follower, whoever holds the store's
/// shipping lock); `performSync`, `lastApplied` and `appliedMeta` may be called from any thread.
/// That is why `@unchecked Sendable` is sound.
final class Applier: @unchecked Sendable {
    let storage: any CommitStorage
    let index: LogIndex
    let notifier: CommitNotifier
    let policy: Durability
    private let syncInterval: Duration
    let logger: Logger?
    /// Fault injection (`StoreOptions.failWrite`, `failSync`).
    private let failWrite: (@Sendable (_ groupLastID: EventID) -> StorageError?)?
    private let failSync: (@Sendable () -> StorageError?)?
    private let observer: (any StoreObserver)?
    /// Told about every group written, after it is published (tests; the log shipper).
    private let onApplied: (@Sendable (CommitGroup) -> Void)?

    private let applied: Mutex<(last: EventID, meta: StoreMeta)>
    /// The last id known to be durable (synced).
    private let durable: Atomic<UInt64>

    // Owned by the caller of `apply`.
    /// The open segment after the last applied group.
    private(set) var segment: OpenSegment
    /// When the oldest write not yet fsynced happened (nil: everything written is durable).
    private var unsyncedSince: ContinuousClock.Instant?
    /// Background WAL syncs that failed in a row, and why the last one did. Past
    /// `syncFailuresMax`, groups are refused until a sync succeeds: after a failed fsync the
    /// kernel may have dropped the dirty pages, so acknowledging more writes on top would
    /// promise what the disk may not hold.
    private var syncFailures = 0
    private var syncError: String?
    static let syncFailuresMax = 3
    /// Truncations and promotions so far (`reset`, `newOwner`): a sync begun before one says
    /// nothing about the log after a truncation, and belongs to no one after a promotion.
    private var generation = 0

    init(
        storage: any CommitStorage, index: LogIndex, lastID: EventID, meta: StoreMeta, segment: OpenSegment,
        policy: Durability, syncInterval: Duration, observer: (any StoreObserver)?, logger: Logger?,
        failWrite: (@Sendable (_ groupLastID: EventID) -> StorageError?)? = nil, failSync: (@Sendable () -> StorageError?)? = nil,
        onApplied: (@Sendable (CommitGroup) -> Void)? = nil
    ) {
        self.onApplied = onApplied
        self.storage = storage
        self.index = index
        self.policy = policy
        self.syncInterval = syncInterval
        self.observer = observer
        self.logger = logger
        self.failWrite = failWrite
        self.failSync = failSync
        self.segment = segment
        applied = Mutex((lastID, meta))
        durable = Atomic(lastID)
        notifier = CommitNotifier(last: lastID)
    }

    var lastApplied: EventID { applied.withLock { $0.last } }
    /// Every event up to this id is durable.
    var durableID: EventID { durable.load(ordering: .acquiring) }
    var appliedMeta: StoreMeta { applied.withLock { $0.meta } }

    /// Everything applied so far is durable.
    var isDurable: Bool { unsyncedSince == nil }

    /// When the next background sync is due under `--fsync interval`; nil when none is.
    var syncDue: ContinuousClock.Instant? {
        guard policy == .interval, let since = unsyncedSince else { return nil }
        return since + syncInterval
    }

    /// Why groups are refused now, if they are: the WAL could not be synced.
    var refusal: LogError? {
        guard syncFailures >= Self.syncFailuresMax, let syncError else { return nil }
        return LogError(
            .storage,
            "the write-ahead log could not be synced \(syncFailures) times in a row (\(syncError)); appends are refused until a sync succeeds, and nothing of this batch was stored")
    }

    /// Applies `group`, which must follow the last applied id and not go back in epochs. Returns
    /// whether the write was fsynced and how long it took. A group of no event writes nothing
    /// (with `wantsSync`, it syncs what is not yet durable).
    @discardableResult
    func apply(_ group: CommitGroup, wantsSync: Bool) throws(LogError) -> (synced: Bool, writeDuration: Duration) {
        if let refusal { throw refusal }
        let (last, meta) = applied.withLock { $0 }
        guard group.first == last + 1 else {
            throw LogError(.invalidArgument, "commit group \(group.first)...\(group.last) does not follow the last applied id \(last)")
        }
        guard group.epoch >= meta.currentEpoch else {
            throw LogError(.invalidArgument, "commit group \(group.first)...\(group.last) is of epoch \(group.epoch), older than the store's \(meta.currentEpoch)")
        }
        guard !group.isEmpty else {
            if wantsSync && unsyncedSince != nil { syncNow() }
            return (unsyncedSince == nil, .zero)
        }
        var after = meta
        after.edges = group.stats.edges
        after.nextTypeID = group.stats.nextTypeID
        after.nextStreamID = group.stats.nextStreamID
        let newEpoch = group.epoch > meta.currentEpoch
        if newEpoch { after.epochHistory.append((group.epoch, group.first)) }
        let nextSegment = try segment(after: group)
        let sync = wantsSync || (syncDue.map { ContinuousClock.now >= $0 } ?? false)
        let started = ContinuousClock.now
        do throws(StorageError) {
            if let error = failWrite?(group.last) { throw error }
            try storage.write(group, epochHistory: newEpoch ? after.epochHistory : nil, sync: sync)
        } catch {
            throw LogError(error)
        }
        let writeDuration = ContinuousClock.now - started
        index.append(group.entries)
        segment = nextSegment
        applied.withLock { $0 = (group.last, after) }
        if sync {
            unsyncedSince = nil
            durable.store(group.last, ordering: .releasing)
        } else if unsyncedSince == nil {
            unsyncedSince = .now
        }
        notifier.publish(group.last)
        onApplied?(group)
        return (sync, writeDuration)
    }

    /// The open segment after `group`: its records added, and closed at each seal the group
    /// carries, which must be exactly the segment those records make.
    private func segment(after group: CommitGroup) throws(LogError) -> OpenSegment {
        var segment = self.segment
        var seals = group.seals[...]
        var id = group.first
        while id <= group.last {
            let record = group.record(id)
            guard let time = RecordCodec.timeUnixNano(of: record) else {
                throw LogError(.invalidArgument, "commit group \(group.first)...\(group.last): record \(id) is malformed")
            }
            segment.add(id: id, timeUnixNano: time, record: record)
            if let seal = seals.first, seal.last == id {
                guard seal == segment.sealed() else {
                    throw LogError(.invalidArgument, "commit group \(group.first)...\(group.last): the seal of segment \(seal.first) does not match its records")
                }
                seals.removeFirst()
                segment = OpenSegment(first: id + 1)
            }
            id += 1
        }
        guard seals.isEmpty else { throw LogError(.invalidArgument, "commit group \(group.first)...\(group.last) seals a segment it does not end") }
        return segment
    }

    /// Starts again from a truncated log: `lastID`, `meta` and `segment` as storage now holds
    /// them, everything durable (the truncation was synced).
    func reset(lastID: EventID, meta: StoreMeta, segment: OpenSegment) {
        self.segment = segment
        applied.withLock { $0 = (lastID, meta) }
        durable.store(lastID, ordering: .releasing)
        unsyncedSince = nil
        generation += 1
        notifier.rewind(to: lastID)
    }

    /// Syncs the WAL; a failure is logged, counted and retried at the next interval.
    func syncNow() {
        let sync = beginSync()
        finishSync(sync, error: performSync())
    }

    /// A sync in two halves, so that a follower applies its next groups while the fsync runs
    /// (`EventStore.syncShipped`): `beginSync` and `finishSync` by the owner, `performSync`
    /// from any thread. `through`: the last id the sync covers (everything applied before it
    /// began); `generation`: a truncation or promotion in between makes its result meaningless.
    struct PendingSync {
        let through: EventID
        let generation: Int
    }

    func beginSync() -> PendingSync { PendingSync(through: lastApplied, generation: generation) }

    /// A new owner takes the applier (a promotion): syncs begun before are not its to finish.
    func newOwner() { generation += 1 }

    /// The fsync itself (`rocksdb_flush_wal` with sync, RocksDB's `SyncWAL`). It may run beside
    /// writes, and covers every write that returned before it was called.
    func performSync() -> StorageError? {
        do throws(StorageError) {
            if let error = failSync?() { throw error }
            try storage.syncWAL()
            return nil
        } catch {
            return error
        }
    }

    func finishSync(_ sync: PendingSync, error: StorageError?) {
        guard sync.generation == generation else { return }
        if let error {
            // Retried one interval later rather than in a loop; meanwhile every answer says durable: false.
            unsyncedSince = .now
            syncFailures += 1
            syncError = error.message
            logger?.error("write-ahead log sync failed", metadata: [
                "error": "\(error.message)", "failures_in_a_row": "\(syncFailures)",
                "appends": "\(syncFailures >= Self.syncFailuresMax ? "refused until a sync succeeds" : "still accepted")",
            ])
            observer?.didFailSync(error: error.message)
            return
        }
        if sync.through > durableID { durable.store(sync.through, ordering: .releasing) }
        if syncFailures > 0 { logger?.notice("write-ahead log synced again", metadata: ["failures_before": "\(syncFailures)"]) }
        // Groups applied while the fsync ran are not covered by it.
        if lastApplied == sync.through { unsyncedSince = nil }
        syncFailures = 0
        syncError = nil
    }
}
