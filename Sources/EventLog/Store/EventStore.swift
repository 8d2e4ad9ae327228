import Foundation
import Logging
import Synchronization

/// The event log: one RocksDB database, one writer, many readers.
///
/// Appends go through the single `Sequencer` (group commit); reads go straight to RocksDB and see
/// every event up to `lastID`, the last committed id. Thread-safe: share one instance.
/// Call `close()` once at shutdown; it drains queued appends, syncs and closes RocksDB.
public final class EventStore: Sendable {
    public let path: String
    public let options: StoreOptions
    let storage: LogStorage
    /// The leader's sequencer, for its term; nil on a follower, a fenced leader or a read-only store.
    let sequencer: Mutex<Sequencer?>
    /// Sequencers that `fence` or `stepDown` took out of `sequencer` and that are still closing
    /// (their threads may be committing or scanning keys): `close()` waits for them too, so
    /// RocksDB never closes under them. Changed only with `sequencer`'s lock held.
    let retiring = Mutex<[ObjectIdentifier: Sequencer]>([:])
    /// The epoch that fenced this node's term (0: never fenced since it opened).
    let fencedBy = Atomic<UInt64>(0)
    /// Changes to events already committed: compaction batches, prunes and truncations.
    let rewrites = Atomic<UInt64>(0)
    /// Writes every group (the sequencer's on a leader, the shipped ones on a follower); nil read-only.
    let applier: Applier?
    /// Held to apply shipped groups, truncate, or change role: one at a time, in order.
    let shipping = Mutex(())
    /// Held by a follower's sync for its whole length (its fsync runs outside `shipping`), so
    /// that `close()` can wait for it.
    let followerSync = Mutex(())
    /// Where recent shipments to followers ended: a reader there continues without searching.
    let shippingReaders = Mutex<[EventID: GroupReader]>([:])
    /// The ids every truncation since open cut after, oldest first (at most `truncationsKept`):
    /// a live reader that has passed a cut must be told (`truncation(since:)`).
    let truncationCuts = Mutex<(count: Int, cuts: [EventID])>((0, []))
    /// The highest id this node knows a follower held durably (`confirmedID`).
    let confirmedMark: Atomic<UInt64>
    public let notifier: CommitNotifier
    let startMeta: StoreMeta
    /// Links, types and streams of every event, in memory (`LogIndex`).
    let index: LogIndex
    /// What a prune removed, nil if the store was never pruned (`firstID` is 1).
    let prunedPrefix: Mutex<PrunedPrefix?>
    public let startedAt: ContinuousClock.Instant = .now
    /// The damage of an accepted damaged write-ahead log (`WALDamagePolicy.accept`), nil when it was sound.
    public let walDamage: WALDamage?
    /// What the WAL check noticed without refusing (an incomplete last record, dropped by recovery).
    public let walNote: String?
    let closed = Atomic(false)

    public var limits: Limits { options.limits }

    /// Opens (creating if needed) the store in `path`, checks the segment manifest against the log,
    /// rebuilds the open segment and, for a new store, writes the genesis event.
    public static func open(at path: String, options: StoreOptions = StoreOptions(), logger: Logger? = nil) async throws -> EventStore {
        try options.limits.validate()
        if !options.readOnly {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw LogError(.storage, "cannot create data directory \(path): \(error)")
            }
        } else if !FileManager.default.fileExists(atPath: path + "/CURRENT") {
            throw LogError(.notFound, "no Banyan store in \(path)")
        }
        let verdict = try checkWAL(path, options: options, logger: logger)
        if let damage = verdict.damage, !options.readOnly {
            // Before RocksDB discards the damaged log, and with it the only record of the lost ids.
            try WALLossNote(
                file: damage.file, offset: damage.offset, reason: damage.reason,
                recoveredThrough: damage.recoverableThrough, writtenThrough: damage.writtenThrough
            ).save(path)
        }
        let store = try openExplained(path: path, options: options, verdict: verdict, logger: logger)
        if let logger {
            logger.info("store opened", metadata: [
                "path": "\(path)", "last_id": "\(store.lastID)", "read_only": "\(options.readOnly)",
                "fsync": "\(options.durability.rawValue)",
            ])
        }
        if !options.readOnly {
            do {
                if options.role == .leader { try await store.fillLostIDs(logger: logger) }
                if options.createGenesis { try await store.ensureGenesis() }
            } catch {
                store.close()
                throw error
            }
        }
        return store
    }

    private static func openExplained(path: String, options: StoreOptions, verdict: WALVerdict, logger: Logger?) throws(LogError) -> EventStore {
        var attempt = 1
        while true {
            do {
                return try EventStore(path: path, options: options, verdict: verdict, logger: logger)
            } catch {
                // Beside a running server, the MANIFEST a read-only open read may name a WAL the
                // server deleted a moment later; a second look sees the newer MANIFEST.
                if options.readOnly, attempt < readOnlyOpenAttempts, error.cause?.code == .corruption, error.message.contains("WAL") {
                    attempt += 1
                    usleep(20_000)
                    continue
                }
                throw options.readOnly ? explainOpenFailure(error, path: path) : error
            }
        }
    }

    static let readOnlyOpenAttempts = 5

    private init(path: String, options: StoreOptions, verdict: WALVerdict, logger: Logger?) throws(LogError) {
        self.path = path
        self.options = options
        self.walDamage = verdict.damage
        self.walNote = verdict.note
        let storage = try storageCall { () throws(StorageError) in
            try LogStorage(
                path: path, readOnly: options.readOnly, blockCacheBytes: options.blockCacheBytes, filesMax: options.storeFilesMax,
                walRecovery: verdict.recovery, keyLookups: options.limits.keyFilterBytesMax == 0)
        }
        try Self.checkReplay(storage, verdict)
        self.storage = storage
        let lastID = try storageCall { () throws(StorageError) in try storage.lastID() }
        let meta = try Self.loadOrInitialiseMeta(storage, lastID: lastID, readOnly: options.readOnly)
        startMeta = meta
        let confirmed = try storageCall { () throws(StorageError) -> UInt64 in
            guard let bytes = try storage.meta(MetaKey.confirmedID), bytes.count == 8 else { return 0 }
            var reader = ByteReader(bytes)
            return try reader.be64()
        }
        confirmedMark = Atomic(confirmed)
        let pruned = try storageCall { () throws(StorageError) in try PrunedPrefix.load(storage) }
        prunedPrefix = Mutex(pruned)
        let index = try storageCall { () throws(StorageError) in try LogIndex.load(storage, lastID: lastID, pruned: pruned) }
        self.index = index
        if let pruned, !options.readOnly {
            // A prune cut short by a crash left records below its cut: finish it.
            let removed = try storageCall { () throws(StorageError) in try Self.removePrunedRecords(storage, below: pruned.firstID) }
            if removed > 0 { logger?.notice("removed \(removed) records below the pruned prefix (\(pruned.firstID)) a prune left behind") }
        }
        if options.readOnly {
            sequencer = Mutex(nil)
            applier = nil
            notifier = CommitNotifier(last: lastID)
        } else {
            let segment = try Recovery.openSegment(storage, firstID: index.firstID, lastID: lastID)
            let applier = Applier(
                storage: storage, index: index, lastID: lastID, meta: meta, segment: segment, policy: options.durability,
                syncInterval: options.syncInterval, observer: options.observer, logger: logger,
                failWrite: options.failWrite, failSync: options.failSync, onApplied: options.onApplied)
            self.applier = applier
            notifier = applier.notifier
            if options.role == .leader {
                let writer = Sequencer(
                    applier: applier, limits: options.limits, now: options.clock, observer: options.observer,
                    lastID: lastID, meta: meta, segment: segment, epoch: meta.currentEpoch)
                writer.start()
                sequencer = Mutex(writer)
            } else {
                sequencer = Mutex(nil)
            }
        }
    }

    /// Belt and braces: every intact WAL record must have been replayed.
    private static func checkReplay(_ storage: LogStorage, _ verdict: WALVerdict) throws(LogError) {
        let recovered = storage.db.latestSequence
        guard recovered < verdict.lastSequence else { return }
        storage.close()
        throw LogError(
            .storage,
            "RocksDB recovered writes up to sequence number \(recovered), but the write-ahead log holds intact writes up to \(verdict.lastSequence); refusing to open a store that lost acknowledged writes",
            cause: StorageError(.corruption, "WAL replay stopped early"))
    }

    private static func loadOrInitialiseMeta(_ storage: LogStorage, lastID: EventID, readOnly: Bool) throws(LogError) -> StoreMeta {
        try storageCall { () throws(StorageError) -> StoreMeta in
            if let meta = try StoreMeta.load(storage) { return meta }
            guard lastID == 0 else { throw StorageError(.corruption, "meta is missing but the log holds \(lastID) events") }
            guard !readOnly else { return .fresh }
            let fresh = StoreMeta.fresh
            let batch = RocksWriteBatch()
            batch.put(storage.cf(.meta), MetaKey.formatVersion, StoreMeta.encodedFormatVersion())
            batch.put(storage.cf(.meta), MetaKey.epochHistory, fresh.encodedEpochHistory())
            batch.put(storage.cf(.meta), MetaKey.stats, fresh.encodedStats())
            try storage.db.write(batch, sync: true)
            return fresh
        }
    }

    var writerMeta: StoreMeta { applier?.appliedMeta ?? startMeta }

    /// The leadership term new events are appended in.
    public var epoch: UInt64 { writerMeta.currentEpoch }

    /// Writes CelestialTree's genesis event (id 1) into an empty, writable store.
    public func ensureGenesis() async throws {
        guard lastID == 0, role == .leader else { return }
        try await append([AppendRequest(type: "genesis", message: "CelestialTree begins.")])
    }

    /// The id of the last committed event (0 for an empty store).
    public var lastID: EventID { notifier.lastCommitted }

    /// The lowest id the store holds: 1 unless it was pruned (`prune(below:snapshot:)`).
    public var firstID: EventID { index.firstID }

    /// What the last prune removed, nil if the store was never pruned.
    public var pruned: PrunedPrefix? { prunedPrefix.withLock { $0 } }

    /// Counts the changes made to events already committed (a compaction batch dropping
    /// content, a prune, a follower's truncation), once before and once after each: what was
    /// read under a snapshot may differ once it moves, so a reader that keeps answers compares it.
    public var rewriteCount: UInt64 { rewrites.load(ordering: .acquiring) }

    /// Runs a change to committed events with the rewrite count odd, and even again after,
    /// also when it throws: readers that keep what they read (`TreeMetaCache`) take an odd
    /// count for "under way", and one left odd would turn them off for good.
    func rewriting<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        rewrites.add(1, ordering: .releasing)
        defer { rewrites.add(1, ordering: .releasing) }
        return try body()
    }

    /// Throws the pruned-prefix error for an id below the first id.
    public func checkNotPruned(_ id: EventID) throws(LogError) {
        guard id >= 1, id < index.firstID, let pruned else { return }
        throw pruned.error(id)
    }

    /// Throws the pruned-prefix error for a read of the log after `after` that would skip
    /// pruned events (a reader starting at 0 on a pruned store must say where it resumes).
    public func checkNotPruned(after: EventID) throws(LogError) {
        guard after + 1 < index.firstID, let pruned else { return }
        throw pruned.error(after: after)
    }

    /// Appends one batch atomically: either every event gets an id (or its original id, for a
    /// known key) or the batch is rejected with the index and field of the first bad event and
    /// nothing is stored.
    /// - Parameter durability: overrides the store's policy for this batch (`.group` waits for fsync).
    @discardableResult
    public func append(_ requests: [AppendRequest], durability: Durability? = nil) async throws -> AppendReceipt {
        try await currentWriter().submit(requests, durability: durability)
    }

    /// `append` without a task, for several batches at once (each atomic on its own, committed in
    /// their order and after those of earlier calls; batches handed over together can share a
    /// commit group): each batch's `complete` gets its receipt or error on the writer's thread,
    /// or on the caller's for a batch refused at once. A caller that submits from one thread (an
    /// event loop) keeps its order.
    public func append(_ batches: [AppendBatch], durability: Durability? = nil) {
        do {
            try currentWriter().submit(batches, durability: durability)
        } catch {
            for batch in batches { batch.complete(.failure(error)) }
        }
    }

    private func currentWriter() throws(LogError) -> Sequencer {
        guard let writer = sequencer.withLock({ $0 }) else {
            if applier == nil { throw LogError(.invalidArgument, "the store is open read-only") }
            let by = fencedBy.load(ordering: .acquiring)
            if by > 0 { throw LogError(.notLeader, "this node's term was superseded by epoch \(by); it takes no more writes") }
            throw LogError(.notLeader, "this node follows a leader; append on the leader")
        }
        return writer
    }

    /// Drains queued appends, syncs the WAL, flushes memtables and closes RocksDB. Idempotent; callers must have
    /// stopped reading first (the server closes the store only after it has stopped serving).
    public func close() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        let (writer, retired) = sequencer.withLock { slot in (slot, retiring.withLock { Array($0.values) }) }
        writer?.close()
        // Closing twice only waits for the first close to end.
        for old in retired { old.close() }
        // A follower's fsync under way ends before RocksDB closes; none begins after `closed`.
        followerSync.withLock { _ in }
        if let applier {
            // Under the shipping lock: an `applyShipped` that began before `closed` ends first,
            // and none applies after it.
            shipping.withLock { _ in if writer == nil, !applier.isDurable { applier.syncNow() } }
            // Best effort: on failure the WAL still holds everything and the next open replays it.
            try? storage.db.flushAll()
        }
        storage.close()
    }
}
