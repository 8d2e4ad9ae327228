import Foundation

/// Which events a compaction drops the message and payload of (docs/OPERATIONS.md, Compaction):
/// ids up to `through` (the last id when it was asked for), below `before` and/or older than
/// `olderThanUnixNano`, of `stream` and `type` when given. Everything else of them stays.
public struct CompactionSpec: Sendable, Hashable {
    public var before: EventID?
    public var olderThanUnixNano: Int64?
    public var through: EventID
    public var stream: String?
    public var type: String?

    public init(before: EventID? = nil, olderThanUnixNano: Int64? = nil, through: EventID, stream: String? = nil, type: String? = nil) {
        self.before = before
        self.olderThanUnixNano = olderThanUnixNano
        self.through = through
        self.stream = stream
        self.type = type
    }

    /// The highest id it may touch.
    public var last: EventID { before.map { min(through, $0 &- 1) } ?? through }

    func matches(_ event: Event) -> Bool {
        event.id <= last && (olderThanUnixNano.map { event.timeUnixNano < $0 } ?? true)
            && (stream.map { event.stream == $0 } ?? true) && (type.map { event.type == $0 } ?? true)
    }

    /// Its form in a `banyan.compaction.started` event's payload, which followers read back.
    public func json() -> JSONValue {
        var members: [JSONMember] = [JSONMember(key: "through", value: .int(through))]
        if let before { members.append(JSONMember(key: "before", value: .int(before))) }
        if let olderThanUnixNano { members.append(JSONMember(key: "older_than_unix_nano", value: .int(olderThanUnixNano))) }
        if let stream { members.append(JSONMember(key: "stream", value: .string(stream))) }
        if let type { members.append(JSONMember(key: "type", value: .string(type))) }
        return .object(members)
    }

    public static func parse(_ value: JSONValue) -> CompactionSpec? {
        guard let through = value["through"]?.uint64Value else { return nil }
        var spec = CompactionSpec(through: through)
        if let v = value["before"] { guard let n = v.uint64Value else { return nil }; spec.before = n }
        if let v = value["older_than_unix_nano"] { guard let n = v.int64Value else { return nil }; spec.olderThanUnixNano = n }
        if let v = value["stream"] { guard let s = v.stringValue else { return nil }; spec.stream = s }
        if let v = value["type"] { guard let s = v.stringValue else { return nil }; spec.type = s }
        guard spec.before != nil || spec.olderThanUnixNano != nil else { return nil }
        return spec
    }
}

/// What one compaction did.
public struct CompactionResult: Sendable {
    /// Events read (those at or below the spec's last id, from where the run resumed).
    public var examined: UInt64 = 0
    /// Events rewritten in compacted form now (matching events already compacted, or with nothing
    /// to drop, are left as they are).
    public var compacted: UInt64 = 0
    /// Record bytes before and after the rewritten records.
    public var recordBytesBefore: UInt64 = 0
    public var recordBytesAfter: UInt64 = 0
    /// The `log` family's SST bytes before the run and after its RocksDB compaction.
    public var logBytesBefore: UInt64 = 0
    public var logBytesAfter: UInt64 = 0
    public var duration: Duration = .zero

    public var bytesReclaimed: Int64 { Int64(logBytesBefore) - Int64(logBytesAfter) }

    public func json() -> JSONValue {
        .members([
            "examined": .int(examined), "compacted": .int(compacted),
            "record_bytes_before": .int(recordBytesBefore), "record_bytes_after": .int(recordBytesAfter),
            "log_bytes_before": .int(logBytesBefore), "log_bytes_after": .int(logBytesAfter),
            "bytes_reclaimed": .int(bytesReclaimed), "duration_ms": .int(duration.inMilliseconds),
        ])
    }
}

extension EventStore {
    /// The type of the event that starts a compaction; on every node that applies it, the
    /// compaction its payload's `spec` describes runs (`pendingCompactions`).
    public static let compactionEventType = "banyan.compaction.started"
    /// Records rewritten per atomic write.
    static let compactionBatchEvents = 2_048

    /// Rewrites the events `spec` matches in compacted form, in atomic batches that also record
    /// how far it got (`compaction_progress`), so a run cut short by a crash resumes where it
    /// stopped and, done twice, changes nothing. Each record is either whole or compacted at any
    /// moment, so reads and `verify` are sound throughout. Then compacts the `log` family's
    /// range in RocksDB to free the space. `control` is the id of the `banyan.compaction.started`
    /// event this run carries out (0: none, a CLI run on a stopped store); once done it becomes
    /// this node's `compaction_done`.
    /// `shouldStop` is asked between batches: when it says so (a shutdown), the run ends with
    /// `.closed`, its progress mark kept, and the next run for `control` resumes there.
    public func compact(
        _ spec: CompactionSpec, control: EventID, shouldStop: (() -> Bool)? = nil, progress: ((_ done: EventID, _ last: EventID) -> Void)? = nil
    ) throws(LogError) -> CompactionResult {
        guard applier != nil else { throw LogError(.invalidArgument, "the store is open read-only") }
        let started = ContinuousClock.now
        let last = min(spec.last, lastID)
        var result = CompactionResult()
        // Flushed first, so "before" counts the records as files hold them, like "after".
        try storageCall { () throws(StorageError) in try storage.db.flushAll() }
        result.logBytesBefore = logFamilyBytes()
        let truncations = truncation(since: 0).count
        if control > 0 {
            guard let event = try event(control), event.type == Self.compactionEventType else {
                throw LogError(.conflict, "compaction \(control): its control event is no longer in the log (a truncation removed it)")
            }
        }
        var next = try compactionResumePoint(control: control)
        while next <= last {
            if shouldStop?() == true { throw LogError(.closed, "compaction \(control) stopped by shutdown at id \(next - 1); it resumes there") }
            let end = min(last, next + EventID(Self.compactionBatchEvents) - 1)
            try compactBatch(spec, ids: next...end, control: control, truncations: truncations, into: &result)
            progress?(end, last)
            next = end + 1
        }
        try storageCall { () throws(StorageError) in
            try storage.db.syncWAL()
            try storage.db.compactRange(storage.cf(.log), start: KeySpace.id(1), limit: KeySpace.id(last + 1))
        }
        result.logBytesAfter = logFamilyBytes()
        try shipping.withLock { _ throws(LogError) in
            try requireControl(control, since: truncations)
            try finishCompaction(control: control)
        }
        result.duration = ContinuousClock.now - started
        return result
    }

    /// One batch, written with its progress mark. The records are read and rewritten outside
    /// `shipping`, which a follower holds to apply each shipped group; only the write takes it,
    /// and a truncation since the read (which may have dropped some of these records) makes the
    /// batch start over, so a follower never writes back a record its leader made it drop.
    func compactBatch(
        _ spec: CompactionSpec, ids: ClosedRange<EventID>, control: EventID, truncations runStart: Int = 0, into result: inout CompactionResult
    ) throws(LogError) {
        while true {
            let truncations = truncation(since: 0).count
            var batchResult = CompactionResult()
            let batch = try storageCall { () throws(StorageError) -> RocksWriteBatch in
                let batch = RocksWriteBatch()
                let it = try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(ids.lowerBound), upper: KeySpace.id(ids.upperBound + 1), fillCache: false)
                it.seekToFirst()
                while it.isValid {
                    let id = it.key.be64(at: 0)
                    let record = it.value
                    let event = try RecordCodec.decode(id: id, record)
                    batchResult.examined += 1
                    if spec.matches(event), let compact = RecordCodec.compacted(id: id, record, event: event) {
                        batch.put(storage.cf(.log), KeySpace.id(id), compact)
                        batchResult.compacted += 1
                        batchResult.recordBytesBefore += UInt64(record.count)
                        batchResult.recordBytesAfter += UInt64(compact.count)
                    }
                    it.next()
                }
                try it.checkStatus()
                var w = ByteWriter(capacity: 16)
                w.putBE64(control)
                w.putBE64(ids.upperBound)
                batch.put(storage.cf(.meta), MetaKey.compactionProgress, w.bytes)
                return batch
            }
            let written = try shipping.withLock { _ throws(LogError) -> Bool in
                try requireControl(control, since: runStart)
                guard truncation(since: 0).count == truncations else { return false }
                try rewriting { () throws(LogError) in
                    try storageCall { () throws(StorageError) in try storage.db.write(batch, sync: false) }
                }
                return true
            }
            guard written else { continue }
            result.examined += batchResult.examined
            result.compacted += batchResult.compacted
            result.recordBytesBefore += batchResult.recordBytesBefore
            result.recordBytesAfter += batchResult.recordBytesAfter
            return
        }
    }

    /// Stops a run whose control event a truncation (a failover) cut off since it started: the
    /// new leader never asked for it, and may reuse its id for other events. Under `shipping`.
    private func requireControl(_ control: EventID, since runStart: Int) throws(LogError) {
        guard control > 0, let cut = truncation(since: runStart).cut, cut < control else { return }
        throw LogError(.conflict, "compaction \(control) stopped: a truncation after id \(cut) removed its control event (a new leader does not ask for it)")
    }

    /// The first id a run for `control` still has to do: after its progress mark, or the
    /// store's first id (1 unless pruned).
    private func compactionResumePoint(control: EventID) throws(LogError) -> EventID {
        let first = firstID
        return try storageCall { () throws(StorageError) -> EventID in
            guard let bytes = try storage.meta(MetaKey.compactionProgress), bytes.count == 16 else { return first }
            var r = ByteReader(bytes)
            let (mark, done) = (try r.be64(), try r.be64())
            return mark == control ? max(done + 1, first) : first
        }
    }

    private func finishCompaction(control: EventID) throws(LogError) {
        try storageCall { () throws(StorageError) in
            let batch = RocksWriteBatch()
            batch.delete(storage.cf(.meta), MetaKey.compactionProgress)
            if control > 0 {
                var w = ByteWriter(capacity: 8)
                w.putBE64(control)
                batch.put(storage.cf(.meta), MetaKey.compactionDone, w.bytes)
            }
            try storage.db.write(batch, sync: true)
        }
    }

    /// The last `banyan.compaction.started` event this node has carried out (0: none).
    public var compactionDone: EventID {
        guard let bytes = try? storage.meta(MetaKey.compactionDone), bytes.count == 8 else { return 0 }
        var r = ByteReader(bytes)
        return (try? r.be64()) ?? 0
    }

    /// The compactions the log asks for that this node has not carried out, oldest first: each
    /// `banyan.compaction.started` event in the `banyan.maintenance` stream after
    /// `compactionDone`, with the spec its payload holds (one whose payload does not parse is
    /// skipped, and says so in `problem`).
    /// `after` skips ids a caller has looked at already (it never goes below `compactionDone`).
    public func pendingCompactions(after: EventID = 0, stream: String = "banyan.maintenance") throws(LogError) -> [(control: EventID, spec: CompactionSpec?)] {
        guard let type = try dictionaryID(MetaKey.type(Self.compactionEventType)) else { return [] }
        let streamID = try dictionaryID(MetaKey.stream(stream))
        guard let streamID else { return [] }
        var found: [(EventID, CompactionSpec?)] = []
        var after = max(after, compactionDone)
        let upTo = lastID
        while after < upTo {
            let (ids, next) = index.scan(type: type, stream: streamID, after: after, upTo: upTo, limit: 64, scanMax: 1 << 20)
            for id in ids {
                let spec = try event(id)?.payloadValue?["spec"].flatMap(CompactionSpec.parse)
                found.append((id, spec))
            }
            after = next
        }
        return found
    }

    /// Marks a control event this node will not carry out (its payload is malformed) as done.
    public func skipCompaction(control: EventID) throws(LogError) {
        try finishCompaction(control: control)
    }

    private func logFamilyBytes() -> UInt64 {
        UInt64(storage.db.property("rocksdb.total-sst-files-size", family: storage.cf(.log)) ?? "0") ?? 0
    }
}
