import Foundation
import Synchronization

/// The single writer: gathers concurrent appends into commit groups, validates and stages each
/// client batch atomically, writes one WriteBatch through the WAL, fsyncs per the durability
/// policy, then acknowledges every batch of the group together.
///
/// Thread-safety: `submit` may be called from any task. The queue is guarded by `condition`;
/// every other stored property is touched only by the writer thread (or by `init` before the
/// thread starts), which is why `@unchecked Sendable` is sound.
final class Writer: @unchecked Sendable {
    struct Pending {
        var requests: [AppendRequest]
        var durability: Durability
        var continuation: CheckedContinuation<AppendReceipt, any Error>
    }

    let storage: LogStorage
    let limits: Limits
    let policy: Durability
    private let syncInterval: Duration
    private let now: @Sendable () -> Int64
    private let observer: (any StoreObserver)?
    let notifier: CommitNotifier
    /// Extended after each written group, before it is published.
    private let index: LogIndex

    private let condition = NSCondition()
    private var exited = false
    private var queue: [Pending] = []
    private var queuedEvents = 0
    private var closing = false

    // Writer-thread state.
    private(set) var lastID: EventID
    private(set) var meta: StoreMeta
    private(set) var segment: OpenSegment
    private let batch = RocksWriteBatch()
    /// Each staged record is encoded here, then copied into the batch.
    var recordBuffer = ByteWriter(capacity: 4_096)
    private var typeIDs: [String: UInt32] = [:]
    private var streamIDs: [String: UInt32] = [:]
    private var recentTypes = NameCache()
    private var recentStreams = NameCache()
    /// When the oldest write not yet fsynced happened (nil: everything written is durable).
    private var unsyncedSince: ContinuousClock.Instant?
    /// `meta` as of the last commit, for readers on other threads.
    private let published: Mutex<StoreMeta>

    var publishedMeta: StoreMeta { published.withLock { $0 } }

    init(
        storage: LogStorage, limits: Limits, policy: Durability, syncInterval: Duration,
        now: @escaping @Sendable () -> Int64, observer: (any StoreObserver)?, lastID: EventID, meta: StoreMeta, segment: OpenSegment,
        index: LogIndex
    ) {
        self.index = index
        self.observer = observer
        self.storage = storage
        self.limits = limits
        self.policy = policy
        self.syncInterval = syncInterval
        self.now = now
        self.lastID = lastID
        self.meta = meta
        self.segment = segment
        published = Mutex(meta)
        notifier = CommitNotifier(last: lastID)
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "banyan-writer"
        thread.start()
    }

    /// Enqueues one client batch and waits for its commit group to be written.
    func submit(_ requests: [AppendRequest], durability: Durability?) async throws -> AppendReceipt {
        guard !requests.isEmpty else { return AppendReceipt(results: [], durable: true) }
        guard requests.count <= limits.batchEventsMax else {
            throw LogError(.invalidArgument, "batch of \(requests.count) events exceeds batchEventsMax \(limits.batchEventsMax)", field: "events")
        }
        return try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            if closing {
                condition.unlock()
                continuation.resume(throwing: LogError(.closed, "the store is closing"))
                return
            }
            if queuedEvents + requests.count > limits.writerQueueEventsMax {
                condition.unlock()
                continuation.resume(throwing: LogError(
                    .overloaded, "writer queue is full (\(queuedEvents) events waiting, writerQueueEventsMax \(limits.writerQueueEventsMax))"))
                return
            }
            queue.append(Pending(requests: requests, durability: durability ?? policy, continuation: continuation))
            queuedEvents += requests.count
            condition.signal()
            condition.unlock()
        }
    }

    /// Stops accepting appends, commits what is queued, syncs, and returns when the thread has
    /// exited. Every caller waits for that, so none can close RocksDB under a running writer.
    func close() {
        condition.lock()
        closing = true
        condition.broadcast()
        while !exited { condition.wait() }
        condition.unlock()
    }

    private func run() {
        while let group = nextGroup() {
            commit(group)
        }
        if unsyncedSince != nil { syncNow() }
        condition.lock()
        exited = true
        condition.broadcast()
        condition.unlock()
    }

    /// Blocks until work is queued (syncing the WAL on the interval policy while idle); nil once closed and drained.
    private func nextGroup() -> [Pending]? {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty {
            if closing { return nil }
            if policy == .interval, let since = unsyncedSince {
                let due = since + syncInterval
                if ContinuousClock.now >= due {
                    condition.unlock()
                    syncNow()
                    condition.lock()
                    continue
                }
                _ = condition.wait(until: Date(timeIntervalSinceNow: Self.seconds(due - ContinuousClock.now)))
            } else {
                condition.wait()
            }
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

    private func syncNow() {
        do {
            try storage.db.syncWAL()
            unsyncedSince = nil
        } catch {
            // Retry one interval later rather than spinning; meanwhile every answer says durable: false.
            unsyncedSince = .now
        }
    }

    /// Under `.interval`, a busy writer syncs with the next write once the interval is due, so a
    /// queue that never empties cannot postpone durability forever.
    private var intervalDue: Bool {
        guard policy == .interval, let since = unsyncedSince else { return false }
        return ContinuousClock.now - since >= syncInterval
    }

    private static func seconds(_ d: Duration) -> TimeInterval {
        let (s, atto) = d.components
        return max(0.001, TimeInterval(s) + TimeInterval(atto) / 1e18)
    }

    private func commit(_ group: [Pending]) {
        let groupStart = lastID
        batch.clear()
        var stage = GroupStage(batch: batch, lastID: lastID, meta: meta, segment: segment, timeUnixNano: now())
        var outcomes: [Result<[AppendResult], LogError>] = []
        outcomes.reserveCapacity(group.count)
        for pending in group {
            outcomes.append(stageBatch(pending.requests, into: &stage))
        }
        let wantsSync = group.indices.contains { i in
            group[i].durability == .group && (try? outcomes[i].get()) != nil
        }
        if !stage.isEmpty {
            stage.batch.put(storage.cf(.meta), MetaKey.stats, stage.meta.encodedStats())
            if !stage.entries.isEmpty {
                stage.batch.put(storage.cf(.index), KeySpace.id(groupStart + 1), IndexBlock(first: groupStart + 1, entries: stage.entries).encoded())
            }
            let sync = wantsSync || intervalDue
            let started = ContinuousClock.now
            do {
                try storage.db.write(stage.batch, sync: sync)
            } catch {
                let failure = LogError(error)
                for pending in group { pending.continuation.resume(throwing: failure) }
                return
            }
            lastID = stage.lastID
            index.append(stage.entries)
            meta = stage.meta
            segment = stage.segment
            typeIDs.merge(stage.newNames[.type] ?? [:]) { a, _ in a }
            streamIDs.merge(stage.newNames[.stream] ?? [:]) { a, _ in a }
            for (name, id) in stage.newNames[.type] ?? [:] { recentTypes.set(name, id) }
            for (name, id) in stage.newNames[.stream] ?? [:] { recentStreams.set(name, id) }
            trimCaches()
            if sync { unsyncedSince = nil } else if unsyncedSince == nil { unsyncedSince = .now }
            published.withLock { $0 = stage.meta }
            observer?.didCommit(
                events: Int(stage.lastID - groupStart), batches: group.count, synced: sync,
                writeDuration: ContinuousClock.now - started)
            notifier.publish(lastID)
        } else if wantsSync && unsyncedSince != nil {
            // Only duplicates: their originals may still be unsynced, and the client asked for durability.
            syncNow()
        }
        let durable = unsyncedSince == nil
        for (pending, outcome) in zip(group, outcomes) {
            switch outcome {
            case .success(let results): pending.continuation.resume(returning: AppendReceipt(results: results, durable: durable))
            case .failure(let error): pending.continuation.resume(throwing: error)
            }
        }
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
        do {
            if let failure {
                try stage.rollback()
                return .failure(failure)
            }
            try stage.keep()
            return .success(results)
        } catch {
            preconditionFailure("write batch save point failed: \(error)")
        }
    }

    /// Caches of committed dictionary entries are a convenience: past a bound, start over.
    private func trimCaches() {
        if typeIDs.count > 100_000 { typeIDs.removeAll() }
        if streamIDs.count > 100_000 { streamIDs.removeAll() }
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
        // Allocated earlier in this group: not cached until the group commits, since a rollback
        // gives the id back.
        if let id = stage.newNames[kind]?[name] { return id }
        let metaKey = kind == .type ? MetaKey.type(name) : MetaKey.stream(name)
        if let id = try storageCall({ () throws(StorageError) in try storage.dictionaryID(metaKey) }) {
            if kind == .type { typeIDs[name] = id } else { streamIDs[name] = id }
            remember(kind, name, id)
            return id
        }
        let id = stage.meta.allocate(kind)
        stage.newNames[kind, default: [:]][name] = id
        stage.mark.names.append((kind, name))
        stage.batch.put(storage.cf(.meta), metaKey, ByteWriter.be32(id))
        return id
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
}
