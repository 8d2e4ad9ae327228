/// What `verify` found.
public struct VerifyReport: Sendable {
    public var events: UInt64 = 0
    public var edges: UInt64 = 0
    public var roots: UInt64 = 0
    public var heads: UInt64 = 0
    public var keyed: UInt64 = 0
    public var streamed: UInt64 = 0
    /// Events whose message and payload compaction dropped (their proofs checked).
    public var compacted: UInt64 = 0
    public var sealedSegments = 0
    /// The first id of a pruned store (nil: never pruned); the counts above cover ids from it.
    public var prunedBelow: EventID?
    /// The first problems found, at most `problemsMax`.
    public var problems: [String] = []
    /// All problems found, including those not listed.
    public var problemCount = 0
    /// Facts worth knowing that are not problems (a write cut short at the end of the WAL).
    public var notes: [String] = []

    public var ok: Bool { problemCount == 0 }

    mutating func report(_ problem: String, max: Int) {
        problemCount += 1
        if problems.count < max { problems.append(problem) }
    }
}

/// Walks the whole store and checks every invariant that can be checked:
/// the write-ahead log is intact (`WALScanner`, before the open); ids dense from 1; every record decodes with a good checksum and the parent rule (parents
/// distinct, `1 <= p < id`); the epoch of each record matches the epoch history; the `index`
/// blocks tile the log and each entry agrees with its record (parents, type and stream through
/// the dictionaries); `keys` agrees with the records in both directions (per event, and by
/// count); the stats counter equals the edge count; sealed segments tile the log and their
/// checksums match the records. A pruned store is checked from its first id: nothing may remain
/// below it but the keys of pruned events, and the totals the prune recorded (`PrunedPrefix`)
/// make up the counters.
///
/// Memory: one bit per event (which events have children), one decoded index block, and small
/// dictionaries.
struct Verifier {
    let storage: LogStorage
    let lastID: EventID
    let meta: StoreMeta
    let pruned: PrunedPrefix?
    let firstID: EventID
    let problemsMax: Int
    var report = VerifyReport()
    var hasChildren: IDBitset
    var typeIDs: [String: UInt32?] = [:]
    var streamIDs: [String: UInt32?] = [:]
    /// The index block holding the event being checked.
    var block: IndexBlock?
    let blocks: RocksIterator

    init(storage: LogStorage, lastID: EventID, meta: StoreMeta, problemsMax: Int) throws(StorageError) {
        self.storage = storage
        self.lastID = lastID
        self.meta = meta
        pruned = try PrunedPrefix.load(storage)
        firstID = pruned?.firstID ?? 1
        self.problemsMax = problemsMax
        report.prunedBelow = pruned?.firstID
        hasChildren = IDBitset(lower: firstID, upper: max(lastID, firstID))
        blocks = try storage.db.iterator(storage.cf(.index), fillCache: false)
    }

    mutating func problem(_ text: String) { report.report(text, max: problemsMax) }

    /// Events between two progress reports.
    static let progressEvery: EventID = 100_000

    mutating func run(progress: ((EventID) -> Void)?) throws(StorageError) -> VerifyReport {
        let segments = try storage.segments()
        report.sealedSegments = segments.count
        var segmentIndex = 0
        var segment = OpenSegment(first: firstID)
        if pruned != nil {
            let below = try storage.db.iterator(storage.cf(.log), upper: KeySpace.id(firstID), fillCache: false)
            below.seekToFirst()
            var left = 0
            while below.isValid {
                left += 1
                below.next()
            }
            try below.checkStatus()
            if left > 0 {
                report.notes.append("\(left) records below the pruned prefix (\(firstID)) remain from a prune cut short; the next writable open removes them")
            }
        }
        let it = try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(firstID), fillCache: false)
        it.seekToFirst()
        var expected = firstID
        while it.isValid {
            let key = it.key
            guard key.count == 8 else {
                problem("log: key of \(key.count) bytes")
                it.next()
                continue
            }
            let id = key.be64(at: 0)
            if id != expected {
                problem("log: id \(id) found where \(expected) was expected (ids must be dense)")
                expected = id
                // The segment holding the gap cannot match its manifest; start counting afresh here.
                segment = OpenSegment(first: id)
                while segmentIndex < segments.count, segments[segmentIndex].last < id { segmentIndex += 1 }
            }
            let record = it.value
            do {
                let event = try RecordCodec.decode(id: id, record)
                if event.compaction != nil { report.compacted += 1 }
                try check(event)
                segment.add(id: id, timeUnixNano: event.timeUnixNano, record: record)
            } catch {
                problem("log: event \(id): \(error.message)")
                segment = OpenSegment(first: id + 1)
            }
            if segmentIndex < segments.count, segments[segmentIndex].last == id {
                if segment.first != segments[segmentIndex].first {
                    problem("segment \(segments[segmentIndex].first)-\(id): not verifiable, a record in it is missing or damaged")
                } else if segment.sealed() != segments[segmentIndex] {
                    problem("segment \(segments[segmentIndex].first)-\(id): manifest entry does not match the records")
                }
                segmentIndex += 1
                segment = OpenSegment(first: id + 1)
            }
            report.events += 1
            if id % Self.progressEvery == 0 { progress?(id) }
            expected = id + 1
            it.next()
        }
        try it.checkStatus()
        if expected - 1 != lastID { problem("log: ends at \(expected - 1) but the store reports \(lastID)") }
        if segmentIndex < segments.count {
            problem("segment manifest: \(segments.count - segmentIndex) sealed segments lie beyond the log's end")
        }
        try checkTotals()
        return report
    }

    private mutating func check(_ event: Event) throws(StorageError) {
        let id = event.id
        if Set(event.parents).count != event.parents.count { problem("event \(id): repeated parents") }
        let epoch = meta.epochHistory.last(where: { $0.firstID <= id })?.epoch
        if epoch != event.epoch { problem("event \(id): epoch \(event.epoch), the epoch history says \(epoch.map(String.init) ?? "none")") }
        for parent in event.parents {
            report.edges += 1
            if parent <= lastID, parent >= firstID { hasChildren.insert(parent) }
        }
        if event.parents.isEmpty { report.roots += 1 }
        if let entry = try indexEntry(id) {
            if entry.parents != event.parents { problem("event \(id): index lists parents \(entry.parents), the record \(event.parents)") }
            let type = try dictionaryID(event.type, cache: &typeIDs, metaKey: MetaKey.type(event.type))
            if type != entry.type { problem("event \(id): index type id \(entry.type), the dictionary gives \(type.map(String.init) ?? "nothing") for \"\(event.type)\"") }
            var stream: UInt32? = 0
            if let name = event.stream {
                report.streamed += 1
                stream = try dictionaryID(name, cache: &streamIDs, metaKey: MetaKey.stream(name))
            }
            if stream != entry.stream { problem("event \(id): index stream id \(entry.stream), the record's stream gives \(stream.map(String.init) ?? "nothing")") }
        }
        if let key = event.key {
            report.keyed += 1
            let mapped = try storage.id(forKey: key)
            if mapped != id { problem("event \(id): key \"\(key)\" maps to \(mapped.map(String.init) ?? "nothing")") }
        }
    }

    /// The index entry of `id`, stepping through the blocks in order; nil (with a problem
    /// reported) when no block holds it.
    private mutating func indexEntry(_ id: EventID) throws(StorageError) -> IndexBlock.Entry? {
        if let block, id >= block.first, id < block.first + EventID(block.entries.count) {
            return block.entries[Int(id - block.first)]
        }
        if block == nil { blocks.seek(KeySpace.id(firstID)) } else { blocks.next() }
        if blocks.isValid, blocks.withKey({ LogStorage.be64($0, at: 0) }) != id {
            // Out of step (a missing or extra block): find the block that should hold `id`.
            blocks.seekForPrev(KeySpace.id(id))
        }
        guard blocks.isValid else {
            try blocks.checkStatus()
            problem("index: no block holds event \(id)")
            return nil
        }
        let first = blocks.withKey { LogStorage.be64($0, at: 0) }
        do {
            let decoded = try IndexBlock.decode(first: first, blocks.value)
            block = decoded
            guard first == id || (id > first && id < first + EventID(decoded.entries.count)) else {
                problem("index: no block holds event \(id) (the nearest starts at \(first))")
                return nil
            }
            if first != id { problem("index: block at \(first) does not start where the previous one ended (\(id))") }
            return decoded.entries[Int(id - first)]
        } catch {
            problem("index: \(error.message)")
            block = nil
            return nil
        }
    }

    private func dictionaryID(_ name: String, cache: inout [String: UInt32?], metaKey: [UInt8]) throws(StorageError) -> UInt32? {
        if let cached = cache[name] { return cached }
        let id = try storage.dictionaryID(metaKey)
        if cache.count < Sequencer.dictionaryCacheEntriesMax { cache[name] = id }
        return id
    }

    /// The per-event checks prove every record has its entries; equal totals prove there are no extra ones.
    private mutating func checkTotals() throws(StorageError) {
        let edgesBelow = pruned?.edgesBelow ?? 0
        if meta.edges != edgesBelow + report.edges {
            problem("stats: \(meta.edges) edges recorded, \(report.edges) found\(pruned == nil ? "" : " plus \(edgesBelow) pruned")")
        }
        let keys = try count(.keys)
        let keysBelow = pruned?.keysBelow ?? 0
        if keys != report.keyed + keysBelow {
            problem("keys entries: \(keys) stored, \(report.keyed + keysBelow) expected\(pruned == nil ? "" : " (\(keysBelow) of pruned events)")")
        }
        if let pruned {
            blocks.seekToFirst()
            if blocks.isValid, blocks.withKey({ LogStorage.be64($0, at: 0) }) < pruned.firstID {
                problem("index: a block starts at \(blocks.withKey { LogStorage.be64($0, at: 0) }), below the pruned prefix's end \(pruned.firstID)")
            }
            if let segment = try storage.segments().first, segment.first < pruned.firstID {
                problem("segment manifest: a segment starts at \(segment.first), below the pruned prefix's end \(pruned.firstID)")
            }
        }
        // Blocks past the last one used would describe events that do not exist.
        if let block {
            blocks.seek(KeySpace.id(block.first))
            if blocks.isValid { blocks.next() }
            if blocks.isValid { problem("index: a block starts at \(blocks.withKey { LogStorage.be64($0, at: 0) }), past the log's end \(lastID)") }
        } else if lastID == 0 {
            blocks.seekToFirst()
            if blocks.isValid { problem("index: blocks exist but the log is empty") }
        }
        try blocks.checkStatus()
        var heads: UInt64 = 0
        if lastID >= firstID { for id in firstID...lastID where !hasChildren.contains(id) { heads += 1 } }
        report.heads = heads
    }

    private func count(_ family: KeySpace.Family) throws(StorageError) -> UInt64 {
        let it = try storage.db.iterator(storage.cf(family), fillCache: false)
        it.seekToFirst()
        var n: UInt64 = 0
        while it.isValid {
            n += 1
            it.next()
        }
        try it.checkStatus()
        return n
    }
}

extension EventStore {
    /// Walks the whole store and checks its invariants (see `Verifier`). Run it on a read-only
    /// open beside a server, or on a stopped store.
    public func verify(problemsMax: Int = 100, progress: ((EventID) -> Void)? = nil) throws(LogError) -> VerifyReport {
        let (storage, last, meta) = (storage, lastID, writerMeta)
        return try read { () throws(StorageError) in
            var verifier = try Verifier(storage: storage, lastID: last, meta: meta, problemsMax: problemsMax)
            if let walNote { verifier.report.notes.append(walNote) }
            if let walDamage {
                // Opened past the damage (read-only, nothing changed): the rest is checked as
                // far as the intact log goes, and the damage is the first problem.
                verifier.problem("\(walDamage)")
            }
            return try verifier.run(progress: progress)
        }
    }
}
