import Logging
import Foundation
import Synchronization

/// The leader's write path: gathers concurrent appends into commit groups, validates and stages
/// each client batch atomically into a `CommitGroup` (ids, epoch, dictionary ids, keys, records,
/// segment accounting), has the `Applier` write it (one atomic write through the WAL, fsynced per
/// the durability policy), then acknowledges every batch of the group together.
///
/// Two threads in a pipeline, so that staging the next group overlaps writing and fsyncing the
/// previous one (on its own, the one thread waited for every fsync with the next group queued):
/// - the stager takes queued batches as a group and stages it on top of the *tentative* state
///   (last id, meta, segment, dictionaries, keys) that includes every group handed on but not
///   yet written, then hands it to the committer through a one-group slot;
/// - the committer has the applier write groups in order (which extends the in-memory index and
///   publishes), and acknowledges. The applier alone owns durability (interval syncs).
/// When the committer is idle and nothing is queued behind a group, there is nothing to overlap,
/// and the stager commits the group itself (saving a thread wake-up per group). A group is
/// acknowledged only after every group before it is written, so an event's parents
/// and the originals of its duplicates are always durable first. If a write fails, that group
/// and every group staged on top of it fail (they carry the committed id they expected to
/// follow), and the stager starts again from the committed state.
///
/// A third thread, at start, reads the stored keys into the key filter (`scanKeys`) and hands it
/// to the stager through `keyScan`; `close` waits for it, so it never reads a closed store.
///
/// Thread-safety: `submit` may be called from any task; the queue is guarded by `condition`,
/// the slot and the committed state by `handoff`, the scan's result by `keyScan`. Every other
/// stored property belongs to one of the threads (or to `init`, before they start), as marked,
/// which is why `@unchecked Sendable` is sound.
final class Sequencer: @unchecked Sendable {
    struct Pending {
        var requests: [AppendRequest]
        var durability: Durability
        /// Called once, on the committer's thread (or the submitter's, for a batch refused at
        /// once).
        var complete: @Sendable (Result<AppendReceipt, any Error>) -> Void
    }

    /// A staged group on its way to the committer.
    private struct Staged {
        var group: [Pending]
        var outcomes: [Result<[AppendResult], LogError>]
        var stage: GroupStage
        /// The last committed id this group was staged on top of.
        var after: EventID
        var wantsSync: Bool
    }

    let storage: any CommitStorage
    let limits: Limits
    let policy: Durability
    /// The leadership term of every group this sequencer stages: one sequencer per term, so two
    /// sequencers never write the same epoch (a promotion starts a new one).
    let epoch: UInt64
    /// The epoch that superseded this one (0: none). Once set, nothing more is written or
    /// acknowledged: a fenced leader must not acknowledge a write of its old epoch.
    private let fencedBy = Atomic<UInt64>(0)
    private let now: @Sendable () -> Int64
    private let observer: (any StoreObserver)?
    /// Writes the groups; its state (last applied id, meta, segment, durability) is the committed state.
    let applier: Applier
    var notifier: CommitNotifier { applier.notifier }

    // Queue of client batches (guarded by `condition`).
    private let condition = NSCondition()
    private var queue: [Pending] = []
    private var queuedEvents = 0
    private var closing = false

    // Between the two threads (guarded by `handoff`).
    private let handoff = NSCondition()
    private var slot: Staged?
    private var stagerDone = false
    private var exited = false
    /// Set by the committer after a failed write: the state the stager must start again from.
    private var restart: (lastID: EventID, meta: StoreMeta, segment: OpenSegment)?
    /// Whoever sets this (the committer, or the stager committing a group itself when there is
    /// nothing to overlap with) owns the commit state below until it clears it.
    private var committing = false

    // Stager-thread state: the tentative state, including groups handed on but not written.
    private(set) var lastID: EventID
    private(set) var meta: StoreMeta
    private(set) var segment: OpenSegment
    /// Dictionary ids found in storage (so committed; a group's new names never enter them).
    private var typeIDs: [String: UInt32] = [:]
    private var streamIDs: [String: UInt32] = [:]
    private var recentTypes = NameCache()
    private var recentStreams = NameCache()
    /// Keys and new dictionary names of groups handed on but maybe not yet written, with each
    /// group's last id: storage does not know them yet. A keyed entry keeps its group (shared,
    /// not copied) for the records of the events its keys name.
    private var inFlightKeyed: [(last: EventID, keyed: StagedKeys, group: CommitGroup)] = []
    private var inFlightNames: [(last: EventID, names: [DictionaryKind: [String: UInt32]])] = []
    /// Each staged record is encoded here, then copied into the batch.
    var recordBuffer = ByteWriter(capacity: 4_096)
    /// Every key this sequencer staged, and once `keysScanned` every key storage held when it
    /// started: a key it does not hold is new, with no lookup (stager thread).
    var keyFilter: KeyFilter
    private(set) var keysScanned = false
    /// The scan's filter was taken, or the scan ended or was given up without one (stager thread).
    private var scanOver = false
    /// What this sequencer last told storage through `sequencerLooksUpKeys` (stager thread).
    private var lookupsFiltered: Bool?
    /// Set by `start`, before the threads run.
    private var scanStarted = false
    /// The filter of the keys in storage, built by the key scan thread, taken by the stager.
    private let keyScan = NSCondition()
    private var scanned: KeyFilter?
    private var scanRunning = false
    private let scanStop = Atomic<Bool>(false)
    /// Tests: called by the scan thread once its view of storage is taken, before it reads a key.
    var beforeKeyScan: (@Sendable () -> Void)?
    /// Tests: called by the stager with the number of client batches of a group once it is
    /// staged, before it is handed on.
    var afterStaging: (@Sendable (Int) -> Void)?

    /// Events submitted and not yet taken by the stager.
    var queuedEventCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return queuedEvents
    }

    init(
        applier: Applier, limits: Limits, now: @escaping @Sendable () -> Int64, observer: (any StoreObserver)?,
        lastID: EventID, meta: StoreMeta, segment: OpenSegment, epoch: UInt64
    ) {
        self.applier = applier
        self.epoch = epoch
        storage = applier.storage
        policy = applier.policy
        self.observer = observer
        self.limits = limits
        self.now = now
        self.lastID = lastID
        self.meta = meta
        self.segment = segment
        // A quarter of the bound for the keys staged while the scan runs, the rest for the scan's,
        // so the two never hold more than the bound together.
        keyFilter = KeyFilter(expected: KeyFilter.layerKeysMin, bytesMax: limits.keyFilterBytesMax / 4)
    }

    func start() {
        if keyFilter.isEnabled {
            scanStarted = true
            scanRunning = true
            let scanner = Thread { [self] in scanKeys() }
            scanner.name = "banyan-keyscan"
            scanner.start()
        }
        let stager = Thread { [self] in runStager() }
        stager.name = "banyan-stager"
        stager.start()
        let committer = Thread { [self] in runCommitter() }
        committer.name = "banyan-committer"
        committer.start()
    }

    /// Enqueues one client batch and waits for its commit group to be written.
    func submit(_ requests: [AppendRequest], durability: Durability?) async throws -> AppendReceipt {
        try await withCheckedThrowingContinuation { continuation in
            submit([AppendBatch(requests) { continuation.resume(with: $0) }], durability: durability)
            AppendOrder.current.get()?.placed()
        }
    }

    /// Enqueues client batches in their order, under one lock and with one wake-up of the
    /// stager, so batches submitted together can share a commit group; each `complete` gets its
    /// receipt once its commit group is written. A batch refused at once (too large, a full
    /// queue, a closing store) is completed before this returns.
    func submit(_ batches: [AppendBatch], durability: Durability?) {
        var done: [(AppendBatch, Result<AppendReceipt, any Error>)] = []
        var queued = false
        condition.lock()
        for batch in batches {
            let count = batch.requests.count
            if count == 0 {
                done.append((batch, .success(AppendReceipt(results: [], durable: true))))
            } else if count > limits.batchEventsMax {
                done.append((batch, .failure(LogError(.invalidArgument, "batch of \(count) events exceeds batchEventsMax \(limits.batchEventsMax)", field: "events"))))
            } else if closing {
                done.append((batch, .failure(fencedError ?? LogError(.closed, "the store is closing"))))
            } else if queuedEvents + count > limits.writerQueueEventsMax {
                done.append((batch, .failure(LogError(
                    .overloaded, "writer queue is full (\(queuedEvents) events waiting, writerQueueEventsMax \(limits.writerQueueEventsMax))"))))
            } else {
                queue.append(Pending(requests: batch.requests, durability: durability ?? policy, complete: batch.complete))
                queuedEvents += count
                queued = true
            }
        }
        if queued { condition.signal() }
        condition.unlock()
        for (batch, result) in done { batch.complete(result) }
    }

    /// Stops accepting appends, commits what is queued, syncs, and returns when both threads have
    /// exited. Every caller waits for that, so none can close RocksDB under a running writer.
    func close() {
        condition.lock()
        closing = true
        condition.broadcast()
        condition.unlock()
        handoff.lock()
        while !exited { handoff.wait() }
        handoff.unlock()
        // The scan reads storage: it must be over before the store closes.
        scanStop.store(true, ordering: .releasing)
        waitForKeyScan()
    }

    /// Reads every key of the `keys` family into a filter, in the background: until it is done,
    /// keys are looked up in storage as they always were. Keys written after the scan began were
    /// staged by this sequencer (nothing else writes `keys` while it runs), so they are in
    /// `keyFilter` already.
    private func scanKeys() {
        let bytesMax = limits.keyFilterBytesMax - limits.keyFilterBytesMax / 4
        var filter = KeyFilter(expected: storage.keyCountEstimate(), bytesMax: bytesMax)
        let started = ContinuousClock.now
        do {
            var first = true
            try storage.forEachKey(while: {
                if first {
                    first = false
                    beforeKeyScan?()  // the scan's view of storage is taken: keys staged now are not in it
                }
                return filter.isEnabled && !scanStop.load(ordering: .acquiring)
            }) { filter.insert($0) }
            if !scanStop.load(ordering: .acquiring) {
                if filter.isEnabled {
                    applier.logger?.info("key filter ready", metadata: [
                        "keys": "\(filter.count)", "bytes": "\(filter.bytes)", "took": "\(ContinuousClock.now - started)"])
                } else {
                    applier.logger?.warning("key filter off: the stored keys need more than three quarters of keyFilterBytesMax; keys are looked up in storage", metadata: [
                        "key_filter_bytes_max": "\(limits.keyFilterBytesMax)"])
                }
            }
        } catch {
            applier.logger?.warning("key filter off: scanning the keys failed; keys are looked up in storage", metadata: ["error": "\(error)"])
            filter.disable()
        }
        keyScan.lock()
        if filter.isEnabled && !scanStop.load(ordering: .acquiring) { scanned = filter }
        scanRunning = false
        keyScan.broadcast()
        keyScan.unlock()
    }

    /// Returns once the key scan is over (tests: the next group staged uses its filter).
    func waitForKeyScan() {
        keyScan.lock()
        while scanRunning { keyScan.wait() }
        keyScan.unlock()
    }

    /// Takes the scan's filter once it is there, or stops the scan once this sequencer's own
    /// filter has given up (stager thread, before each group).
    private func followKeyScan() {
        defer { matchLookupFilter() }
        if keysScanned, !keyFilter.isEnabled {
            keysScanned = false
            applier.logger?.warning("key filter off: the keys need more than keyFilterBytesMax; keys are looked up in storage", metadata: [
                "key_filter_bytes_max": "\(limits.keyFilterBytesMax)"])
        }
        guard !scanOver else { return }
        if !keyFilter.isEnabled {
            // No filter at all (a bound of 0), or it gave up while the stored keys were read.
            if scanStarted {
                applier.logger?.warning("key filter off: the keys staged while the stored ones were read need more than a quarter of keyFilterBytesMax; keys are looked up in storage", metadata: [
                    "key_filter_bytes_max": "\(limits.keyFilterBytesMax)"])
                scanStop.store(true, ordering: .releasing)
                keyScan.lock()
                scanned = nil
                keyScan.unlock()
            }
            scanOver = true
            return
        }
        keyScan.lock()
        let taken = scanned, running = scanRunning
        scanned = nil
        keyScan.unlock()
        guard let taken else {
            if !running {
                // The scan gave up (it logged why): this filter alone can never say "new".
                scanOver = true
                keyFilter.disable()
            }
            return
        }
        scanOver = true
        keyFilter.bytesMax = limits.keyFilterBytesMax
        keyFilter.absorb(taken)
        keysScanned = keyFilter.isEnabled
    }

    /// Tells storage whether keys are looked up there: until the scan's filter is taken, and
    /// for good once the filter is off or gave up. The scan of a store near the filter's bound
    /// takes tens of seconds, and a change reaches only the next memtable, so storage hears of
    /// the scan at the first group rather than after it.
    private func matchLookupFilter() {
        let lookups = !keysScanned
        guard lookups != lookupsFiltered else { return }
        lookupsFiltered = lookups
        do {
            try storage.sequencerLooksUpKeys(lookups)
        } catch {
            applier.logger?.warning("the keys family's memtable filter could not be changed", metadata: ["on": "\(lookups)", "error": "\(error)"])
        }
    }

    /// Stops this term: from now on no group is written and no batch acknowledged (queued and
    /// in-flight batches fail with `notLeader`; `close()` then ends the threads). A group already
    /// being written may still reach storage, unacknowledged; a follower of the new leader
    /// truncates it away. Done by the store under its slot's lock, before the close: a store
    /// closing meanwhile closes this sequencer too, and must not commit its queue.
    func markFenced(by newEpoch: UInt64) {
        _ = fencedBy.compareExchange(expected: 0, desired: newEpoch, ordering: .acquiringAndReleasing)
    }

    private var fencedError: LogError? {
        let by = fencedBy.load(ordering: .acquiring)
        guard by > 0 else { return nil }
        return LogError(.notLeader, "this node's term (epoch \(epoch)) was superseded by epoch \(by); nothing of this batch is acknowledged here")
    }

    // MARK: - Stager

    private func runStager() {
        while let group = nextGroup() {
            let staged = stage(group)
            afterStaging?(group.count)
            handoff.lock()
            if slot == nil && !committing && queueIsEmpty() {
                // Nothing to overlap with: committing here saves waking the committer, which
                // on this kind of VM tripled the latency of one-event appends (46 µs -> 160 µs).
                committing = true
                handoff.unlock()
                commit(staged)
                releaseCommit()
                continue
            }
            while slot != nil { handoff.wait() }
            slot = staged
            handoff.broadcast()
            handoff.unlock()
        }
        handoff.lock()
        stagerDone = true
        handoff.broadcast()
        handoff.unlock()
    }

    /// Ends a commit begun by setting `committing`, for whichever thread began it.
    private func releaseCommit() {
        handoff.lock()
        committing = false
        handoff.broadcast()
        handoff.unlock()
    }

    private func queueIsEmpty() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return queue.isEmpty
    }

    /// Blocks until work is queued; nil once closed and drained.
    private func nextGroup() -> [Pending]? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty {
            if closing { return nil }
            condition.wait()
        }
        var taken = 0
        var count = 0
        for pending in queue {
            if taken > 0 && count + pending.requests.count > limits.commitGroupEventsMax { break }
            count += pending.requests.count
            taken += 1
        }
        let group = Array(queue.prefix(taken))
        queue.removeFirst(taken)
        queuedEvents -= count
        return group
    }

    private func stage(_ group: [Pending]) -> Staged {
        settle()
        followKeyScan()
        var stage = GroupStage(
            lastID: lastID, meta: meta, segment: segment, epoch: epoch, timeUnixNano: now(),
            keysMax: group.reduce(0) { sum, pending in pending.requests.reduce(sum) { $1.key == nil ? $0 : $0 + 1 } })
        var outcomes: [Result<[AppendResult], LogError>] = []
        outcomes.reserveCapacity(group.count)
        for pending in group {
            outcomes.append(stageBatch(pending.requests, into: &stage))
        }
        let wantsSync = group.indices.contains { i in
            group[i].durability == .group && (try? outcomes[i].get()) != nil
        }
        stage.group.stats = stage.meta
        // The next group is staged on top of this one, which the committer will write first.
        let groupAfter = lastID
        lastID = stage.lastID
        meta = stage.meta
        segment = stage.segment
        if !stage.keyed.isEmpty { inFlightKeyed.append((stage.lastID, stage.keyed, stage.group)) }
        if !stage.newNames.isEmpty { inFlightNames.append((stage.lastID, stage.newNames)) }
        trimCaches()
        return Staged(group: group, outcomes: outcomes, stage: stage, after: groupAfter, wantsSync: wantsSync)
    }

    /// Picks up what the committer reported: written groups whose keys are now in storage, or a
    /// failed write to start again after.
    private func settle() {
        let written = applier.lastApplied
        handoff.lock()
        let restartFrom = restart
        restart = nil
        handoff.unlock()
        if let restartFrom {
            // Names and keys of the failed groups never reached storage (the caches hold only
            // names found there).
            lastID = restartFrom.lastID
            meta = restartFrom.meta
            segment = restartFrom.segment
            inFlightKeyed.removeAll()
            inFlightNames.removeAll()
        }
        inFlightKeyed.removeAll { $0.last <= written }
        inFlightNames.removeAll { $0.last <= written }
    }

    /// Stages one client batch; on any failure the batch is rolled back out of the group.
    private func stageBatch(_ requests: [AppendRequest], into stage: inout GroupStage) -> Result<[AppendResult], LogError> {
        stage.begin()
        var results: [AppendResult] = []
        results.reserveCapacity(requests.count)
        var failure: LogError?
        for (index, request) in requests.enumerated() {
            do {
                results.append(try stageEvent(request, into: &stage))
            } catch {
                failure = error
                failure?.index = index
                break
            }
        }
        if let failure {
            stage.rollback()
            return .failure(failure)
        }
        return .success(results)
    }

    /// Caches of committed dictionary entries are a convenience: past a bound, start over.
    private func trimCaches() {
        if typeIDs.count > Self.dictionaryCacheEntriesMax { typeIDs.removeAll() }
        if streamIDs.count > Self.dictionaryCacheEntriesMax { streamIDs.removeAll() }
    }

    /// Names one dictionary cache keeps (type and stream names are user-chosen, so the caches
    /// need a bound; a miss costs one `meta` read).
    static let dictionaryCacheEntriesMax = 100_000

    /// The id of an event staged in `stage`, or in a group handed on but perhaps not yet
    /// written, by key, with the group that holds its record.
    func stagedEvent(forKey key: String, hash: UInt64, _ stage: GroupStage) -> (id: EventID, group: CommitGroup)? {
        if let id = stage.keyed.find(key, hash: hash, in: stage.group.keys) { return (id, stage.group) }
        for entry in inFlightKeyed.reversed() {
            if let id = entry.keyed.find(key, hash: hash, in: entry.group.keys) { return (id, entry.group) }
        }
        return nil
    }

    private func remember(_ kind: DictionaryKind, _ name: String, _ id: UInt32) {
        if kind == .type { recentTypes.set(name, id) } else { recentStreams.set(name, id) }
    }

    /// The dictionary id of a type or stream name, allocating the next one (in the group's
    /// WriteBatch) for a name never seen.
    func dictionaryID(_ kind: DictionaryKind, _ name: String, _ stage: inout GroupStage) throws(LogError) -> UInt32 {
        if let id = kind == .type ? recentTypes.id(name) : recentStreams.id(name) { return id }
        if let id = kind == .type ? typeIDs[name] : streamIDs[name] {
            remember(kind, name, id)
            return id
        }
        // Allocated in this group or one not yet written: never cached, since a rollback or a
        // failed write gives the id back.
        if let id = stage.newNames[kind]?[name] { return id }
        for entry in inFlightNames.reversed() {
            if let id = entry.names[kind]?[name] { return id }
        }
        if let id = try storageCall({ () throws(StorageError) in try storage.dictionaryID(kind, name) }) {
            if kind == .type { typeIDs[name] = id } else { streamIDs[name] = id }
            remember(kind, name, id)
            return id
        }
        let id = stage.meta.allocate(kind)
        stage.newNames[kind, default: [:]][name] = id
        stage.mark.names.append((kind, name))
        stage.group.names.append(CommitGroup.Name(kind: kind, name: name, id: id))
        return id
    }

    // MARK: - Committer

    private func runCommitter() {
        while let staged = nextStaged() {
            commit(staged)
            releaseCommit()
        }
        if !applier.isDurable { applier.syncNow() }
        handoff.lock()
        exited = true
        handoff.broadcast()
        handoff.unlock()
    }

    /// Blocks until a group is staged (syncing the WAL on the interval policy while idle); nil
    /// once the stager is done and the slot is empty.
    private func nextStaged() -> Staged? {
        handoff.lock()
        defer { handoff.unlock() }
        while slot == nil || committing {
            if committing {
                handoff.wait()
                continue
            }
            if stagerDone { return nil }
            if let due = applier.syncDue {
                if ContinuousClock.now >= due {
                    committing = true
                    handoff.unlock()
                    applier.syncNow()
                    handoff.lock()
                    committing = false
                    continue
                }
                _ = handoff.wait(until: Date(timeIntervalSinceNow: Self.seconds(due - ContinuousClock.now)))
            } else {
                handoff.wait()
            }
        }
        guard let staged = slot else { preconditionFailure("the handoff loop exits only with a group in the slot") }
        slot = nil
        committing = true
        handoff.broadcast()
        return staged
    }

    private static func seconds(_ d: Duration) -> TimeInterval {
        max(0.001, d.inSeconds)
    }

    private func commit(_ staged: Staged) {
        let stage = staged.stage
        let group = staged.group
        if let fenced = fencedError {
            for pending in group { pending.complete(.failure(fenced)) }
            return
        }
        guard staged.after == applier.lastApplied else {
            // Staged on top of a group whose write failed.
            let failure = LogError(.storage, "an earlier commit group failed to write; nothing of this batch was stored")
            for pending in group { pending.complete(.failure(failure)) }
            return
        }
        do {
            let (synced, writeDuration) = try applier.apply(stage.group, wantsSync: staged.wantsSync)
            if !stage.isEmpty {
                observer?.didCommit(events: stage.group.count, batches: group.count, synced: synced, writeDuration: writeDuration)
            }
        } catch {
            for pending in group { pending.complete(.failure(error)) }
            handoff.lock()
            restart = (applier.lastApplied, applier.appliedMeta, applier.segment)
            handoff.unlock()
            return
        }
        let durable = applier.isDurable
        if let fenced = fencedError {
            for pending in group { pending.complete(.failure(fenced)) }
            return
        }
        for (pending, outcome) in zip(group, staged.outcomes) {
            switch outcome {
            case .success(let results): pending.complete(.success(AppendReceipt(results: results, durable: durable)))
            case .failure(let error): pending.complete(.failure(error))
            }
        }
    }
}

/// Runs a storage call, turning its error into the module's error type.
func storageCall<T>(_ body: () throws(StorageError) -> T) throws(LogError) -> T {
    do { return try body() } catch { throw LogError(error) }
}

extension ByteWriter {
    static func be32(_ v: UInt32) -> [UInt8] {
        var w = ByteWriter(capacity: 4)
        w.putBE32(v)
        return w.bytes
    }

    static func be64(_ v: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: 8)
        w.putBE64(v)
        return w.bytes
    }
}
