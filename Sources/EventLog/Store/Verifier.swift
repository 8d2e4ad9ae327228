/// What `verify` found.
public struct VerifyReport: Sendable {
    public var events: UInt64 = 0
    public var edges: UInt64 = 0
    public var roots: UInt64 = 0
    public var heads: UInt64 = 0
    public var keyed: UInt64 = 0
    public var streamed: UInt64 = 0
    public var sealedSegments = 0
    /// The first problems found, at most `problemsMax`.
    public var problems: [String] = []
    /// All problems found, including those not listed.
    public var problemCount = 0

    public var ok: Bool { problemCount == 0 }

    mutating func report(_ problem: String, max: Int) {
        problemCount += 1
        if problems.count < max { problems.append(problem) }
    }
}

/// Walks the whole store and checks every invariant that can be checked:
/// ids dense from 1; every record decodes with a good checksum and the parent rule (parents
/// distinct, `1 <= p < id`); the epoch of each record matches the epoch history; `parents`,
/// `children`, `by_type`, `by_stream`, `keys`, `root/` and `head/` agree with the records in both
/// directions (by presence per event, and by total counts); the stats counter equals the edge
/// count; sealed segments tile the log and their checksums match the records.
///
/// Memory: one bit per event (which events have children), plus small dictionaries.
struct Verifier {
    let storage: LogStorage
    let lastID: EventID
    let meta: StoreMeta
    let problemsMax: Int
    var report = VerifyReport()
    var hasChildren: IDBitset
    var typeIDs: [String: UInt32?] = [:]
    var streamIDs: [String: UInt32?] = [:]

    init(storage: LogStorage, lastID: EventID, meta: StoreMeta, problemsMax: Int) {
        self.storage = storage
        self.lastID = lastID
        self.meta = meta
        self.problemsMax = problemsMax
        hasChildren = IDBitset(lower: 1, upper: max(lastID, 1))
    }

    mutating func problem(_ text: String) { report.report(text, max: problemsMax) }

    mutating func run(progress: ((EventID) -> Void)?) throws(StorageError) -> VerifyReport {
        let segments = try storage.segments()
        report.sealedSegments = segments.count
        var segmentIndex = 0
        var segment = OpenSegment(first: 1)
        let it = try storage.db.iterator(storage.cf(.log), fillCache: false)
        it.seekToFirst()
        var expected: EventID = 1
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
            if id % 100_000 == 0 { progress?(id) }
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
        let stored = try storage.parents(id)
        if stored != event.parents { problem("event \(id): parents index \(stored) differs from the record's \(event.parents)") }
        for parent in event.parents {
            report.edges += 1
            if parent <= lastID { hasChildren.insert(parent) }
            if try storage.db.get(storage.cf(.children), KeySpace.edge(parent, id)) == nil {
                problem("event \(id): children index lacks the link from parent \(parent)")
            }
        }
        let isRoot = try storage.meta(MetaKey.root(id)) != nil
        if isRoot != event.parents.isEmpty { problem("event \(id): root index says \(isRoot), parents are \(event.parents)") }
        if event.parents.isEmpty { report.roots += 1 }
        if try !hasIndexEntry(.byType, name: event.type, cache: &typeIDs, metaKey: MetaKey.type(event.type), id: id) {
            problem("event \(id): by_type lacks its entry for type \"\(event.type)\"")
        }
        if let stream = event.stream {
            report.streamed += 1
            if try !hasIndexEntry(.byStream, name: stream, cache: &streamIDs, metaKey: MetaKey.stream(stream), id: id) {
                problem("event \(id): by_stream lacks its entry for stream \"\(stream)\"")
            }
        }
        if let key = event.key {
            report.keyed += 1
            let mapped = try storage.id(forKey: key)
            if mapped != id { problem("event \(id): key \"\(key)\" maps to \(mapped.map(String.init) ?? "nothing")") }
        }
    }

    private func hasIndexEntry(
        _ family: KeySpace.Family, name: String, cache: inout [String: UInt32?], metaKey: [UInt8], id: EventID
    ) throws(StorageError) -> Bool {
        let dictionaryID: UInt32?
        if let cached = cache[name] {
            dictionaryID = cached
        } else {
            dictionaryID = try storage.dictionaryID(metaKey)
            if cache.count < 100_000 { cache[name] = dictionaryID }
        }
        guard let dictionaryID else { return false }
        return try storage.db.get(storage.cf(family), KeySpace.indexed(dictionaryID, id)) != nil
    }

    /// The per-event checks prove every record has its index entries; equal totals prove there are no extra ones.
    private mutating func checkTotals() throws(StorageError) {
        if meta.edges != report.edges { problem("stats: \(meta.edges) edges recorded, \(report.edges) found") }
        let counts: [(KeySpace.Family, UInt64, String)] = [
            (.children, report.edges, "children entries"), (.parents, report.events - report.roots, "parents entries"),
            (.byType, report.events, "by_type entries"), (.byStream, report.streamed, "by_stream entries"),
            (.keys, report.keyed, "keys entries"),
        ]
        for (family, expected, what) in counts {
            let found = try count(family)
            if found != expected { problem("\(what): \(found) stored, \(expected) expected") }
        }
        let roots = try storage.metaCount(prefix: MetaKey.rootPrefix, limit: Int.max)
        if UInt64(roots) != report.roots { problem("root index: \(roots) entries, \(report.roots) events without parents") }
        try checkHeads()
    }

    private mutating func checkHeads() throws(StorageError) {
        let prefix = MetaKey.headPrefix
        let it = try storage.db.iterator(storage.cf(.meta), lower: prefix, upper: KeySpace.successor(ofPrefix: prefix), fillCache: false)
        it.seekToFirst()
        var listed: UInt64 = 0
        while it.isValid {
            let key = it.key
            let id = key.count == prefix.count + 8 ? key.be64(at: prefix.count) : 0
            if id == 0 || id > lastID { problem("head index: entry for unknown event \(id)") }
            else if hasChildren.contains(id) { problem("head index: event \(id) is listed as a head but has children") }
            listed += 1
            it.next()
        }
        try it.checkStatus()
        var expected: UInt64 = 0
        if lastID > 0 { for id in 1...lastID where !hasChildren.contains(id) { expected += 1 } }
        report.heads = expected
        if listed != expected { problem("head index: \(listed) entries, \(expected) events without children") }
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
        var verifier = Verifier(storage: storage, lastID: lastID, meta: writerMeta, problemsMax: problemsMax)
        return try read { () throws(StorageError) in try verifier.run(progress: progress) }
    }
}
