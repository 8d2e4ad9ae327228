/// Progress and outcome of an import.
public struct ImportSummary: Sendable {
    public var lines = 0
    public var appended = 0
    /// Events already present (same key or same pinned id and content): nothing stored for them.
    public var duplicates = 0
    public var lastID: EventID = 0
}

extension EventStore {
    /// Imports a JSONL (or `.jsonl.zst`) file in batches of `batchEvents`, in file order, so
    /// parents named by key must appear on earlier lines. Batches are appended without waiting
    /// for fsync and the WAL is synced once at the end.
    ///
    /// Stops at the first bad line with its line number; the batches before it stay stored, and
    /// re-running the import is idempotent for keyed events and for events with an `id`.
    public func importJSONL(
        path: String, batchEvents: Int = 1_000, progress: ((ImportSummary) -> Void)? = nil
    ) async throws -> ImportSummary {
        let reader = try LineReader(path: path, lineBytesMax: limits.eventBodyBytesMax)
        let batchSize = max(1, min(batchEvents, limits.batchEventsMax))
        var summary = ImportSummary()
        var batch: [AppendRequest] = []
        var batchLines: [Int] = []
        var batchPins: [EventID?] = []
        var batchKeys = Set<KeyBytes>()
        if lastID == 0, let firstPin = try Self.firstPinnedID(path: path), firstPin == 1 {
            // An export carries its own genesis; anything else gets CelestialTree's.
        } else {
            try await ensureGenesis()
        }
        var nextID = lastID + 1
        // Every pinned keyed line's key is looked up below, mostly in vain: a change of the
        // memtable filter costs a little and only speeds the lookups, so a failed one is ignored.
        try? storage.importLooksUpKeys(true)
        defer { try? storage.importLooksUpKeys(false) }
        func flush() async throws {
            guard !batch.isEmpty else { return }
            let receipt: AppendReceipt
            do {
                receipt = try await append(batch, durability: .never)
            } catch var error as LogError {
                if let index = error.index {
                    error.message = "\(path): line \(batchLines[index]): \(error.message)"
                    error.index = nil
                }
                throw error
            }
            for (index, result) in receipt.results.enumerated() {
                if let pin = batchPins[index], result.duplicate || result.id != pin {
                    throw LogError(.conflict, "\(path): line \(batchLines[index]): pinned id \(pin) was stored as \(result.id)\(result.duplicate ? " (its key already names that event)" : ""); the store no longer matches the file", field: "id")
                }
                if result.duplicate { summary.duplicates += 1 } else { summary.appended += 1 }
            }
            summary.lastID = lastID
            nextID = lastID + 1
            batch.removeAll(keepingCapacity: true)
            batchLines.removeAll(keepingCapacity: true)
            batchPins.removeAll(keepingCapacity: true)
            batchKeys.removeAll(keepingCapacity: true)
            progress?(summary)
        }
        while let line = try reader.nextLine() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            summary.lines += 1
            let record: ImportRecord
            do {
                record = try ImportRecord.parse(line, depthMax: limits.jsonDepthMax)
            } catch {
                throw LogError(error.code, "\(path): line \(reader.lineNumber): \(error.message)", field: error.field)
            }
            if let pinned = record.id {
                if pinned < nextID - UInt64(batch.count) {
                    try checkPinned(pinned, record.request, dropped: record.dropped, path: path, line: reader.lineNumber)
                    summary.duplicates += 1
                    continue
                }
                guard pinned == nextID else {
                    throw LogError(.invalidArgument, "\(path): line \(reader.lineNumber): id \(pinned) would leave a gap (next id is \(nextID))", field: "id")
                }
                // A known key would make the writer answer "duplicate" without taking the id, shifting every later pin.
                if let key = record.request.key, try batchKeys.contains(KeyBytes(key)) || id(forKey: key) != nil {
                    throw LogError(.conflict, "\(path): line \(reader.lineNumber): key \"\(key)\" already names another event, so id \(pinned) cannot be honoured", field: "key")
                }
            }
            batch.append(record.request)
            batchLines.append(reader.lineNumber)
            batchPins.append(record.id)
            if let key = record.request.key { batchKeys.insert(KeyBytes(key)) }
            nextID += 1
            if batch.count >= batchSize { try await flush() }
        }
        try await flush()
        try storageCall { () throws(StorageError) in try storage.db.syncWAL() }
        summary.lastID = lastID
        return summary
    }

    /// The `id` of the file's first record, if it pins one (an export starts with its genesis).
    private static func firstPinnedID(path: String) throws(LogError) -> EventID? {
        let reader = try LineReader(path: path)
        while let line = try reader.nextLine() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            return (try? ImportRecord.parse(line, depthMax: JSONParser.defaultDepthMax))?.id
        }
        return nil
    }

    private func checkPinned(_ id: EventID, _ request: AppendRequest, dropped: Event.Compaction?, path: String, line: Int) throws(LogError) {
        guard let stored = try event(id) else { throw LogError(.notFound, "\(path): line \(line): event \(id) is missing") }
        var parents = request.parents
        for key in request.parentKeys {
            guard let parent = try self.id(forKey: key) else {
                throw LogError(.notFound, "\(path): line \(line): parent key \"\(key)\" not found", field: "parents")
            }
            parents.append(parent)
        }
        let sameTime = request.timeUnixNano == nil || request.timeUnixNano == stored.timeUnixNano
        let sameContent: Bool
        switch (stored.compaction, dropped) {
        case (nil, nil): sameContent = stored.message == request.message && stored.payload == request.payload
        // A whole line against a compacted event: by the size and checksum of what was dropped.
        case (let compaction?, nil): sameContent = compaction.matches(message: request.message, payload: request.payload)
        // A compacted line imported before became an event without content.
        case (nil, _?): sameContent = stored.message == nil && stored.payload == nil
        // The compacted event the line was exported from.
        case (let compaction?, let line?): sameContent = compaction == line
        }
        guard stored.type == request.type, stored.parents == parents, KeyBytes.same(stored.key, request.key), stored.stream == request.stream,
            sameContent, sameTime
        else {
            throw LogError(.conflict, "\(path): line \(line): id \(id) exists with different content", field: "id")
        }
    }
}
