/// The append rules, applied to one event on the stager thread.
extension Sequencer {
    func stageEvent(_ request: AppendRequest, into stage: inout GroupStage) throws(LogError) -> AppendResult {
        try validateShape(request)
        let parents = try resolveParents(request, stage)
        // Once for the event's key: the filter and the staged-key tables both probe by it.
        let keyHash = request.key.map(KeyFilter.hash(of:)) ?? 0
        if let key = request.key, let owner = try existingEvent(forKey: key, hash: keyHash, stage) {
            // A pruned event's content is gone from this store: its key alone must decide, or a
            // retry would append it a second time (docs/OPERATIONS.md, Pruning).
            guard case .event(let existing) = owner else { return AppendResult(id: owner.id, duplicate: true) }
            guard Self.sameContent(existing, request, parents) else {
                throw LogError(.conflict, "key \"\(key)\" already names event \(existing.id) with different content", field: "key")
            }
            return AppendResult(id: existing.id, duplicate: true)
        }
        let id = stage.lastID + 1
        let event = Event(
            id: id, epoch: stage.group.epoch, timeUnixNano: request.timeUnixNano ?? stage.timeUnixNano,
            type: request.type, parents: parents, key: request.key, stream: request.stream,
            message: request.message, payload: request.payload)
        try put(event, keyHash: keyHash, into: &stage)
        return AppendResult(id: id, duplicate: false)
    }

    private func validateShape(_ r: AppendRequest) throws(LogError) {
        func fail(_ field: String, _ reason: String) -> LogError { LogError(.invalidArgument, reason, field: field) }
        if r.type.isEmpty || Self.isBlank(r.type) { throw fail("type", "type is required") }
        if r.type.utf8.count > limits.typeBytesMax {
            throw fail("type", "type is \(r.type.utf8.count) bytes, more than typeBytesMax \(limits.typeBytesMax)")
        }
        if let problem = Self.controlCharacter(r.type) { throw fail("type", "type must not contain control characters (\(problem))") }
        if let key = r.key {
            if key.isEmpty { throw fail("key", "key must not be empty") }
            if Self.isBlank(key) { throw fail("key", "key must not be blank") }
            if key.utf8.count > limits.keyBytesMax { throw fail("key", "key is longer than keyBytesMax \(limits.keyBytesMax) bytes") }
            if let problem = Self.controlCharacter(key) { throw fail("key", "key must not contain control characters (\(problem))") }
        }
        if let stream = r.stream {
            if stream.isEmpty { throw fail("stream", "stream must not be empty") }
            if Self.isBlank(stream) { throw fail("stream", "stream must not be blank") }
            if let problem = Self.controlCharacter(stream) { throw fail("stream", "stream must not contain control characters (\(problem))") }
            if stream.utf8.count > limits.streamBytesMax {
                throw fail("stream", "stream is longer than streamBytesMax \(limits.streamBytesMax) bytes")
            }
        }
        if let message = r.message, message.utf8.count > limits.messageBytesMax {
            throw fail("message", "message is longer than messageBytesMax \(limits.messageBytesMax) bytes")
        }
        if let payload = r.payload, payload.count > limits.payloadBytesMax {
            throw fail("payload", "payload is \(payload.count) bytes, more than payloadBytesMax \(limits.payloadBytesMax)")
        }
        if r.parents.count + r.parentKeys.count > limits.parentsPerEventMax {
            throw fail("parents", "\(r.parents.count + r.parentKeys.count) parents, more than parentsPerEventMax \(limits.parentsPerEventMax)")
        }
    }

    /// The first control character (Unicode category Cc: U+0000-U+001F, U+007F-U+009F) of a name,
    /// as "U+0000", or nil. Names (types, keys, streams) are identifiers shown in logs, URLs and
    /// terminals, where a NUL, an escape sequence or a line break hides or forges text; messages
    /// and payloads may hold any character.
    static func controlCharacter(_ name: String) -> String? {
        var name = name
        // One pass over contiguous UTF-8, as cheap as the copy the record encoder makes anyway.
        let found: UInt8? = name.withUTF8 { bytes in
            var previous: UInt8 = 0
            for byte in bytes {
                if byte < 0x20 || byte == 0x7F || (previous == 0xC2 && byte <= 0x9F && byte >= 0x80) { return byte }
                previous = byte
            }
            return nil
        }
        return found.map { "U+00" + hex($0) }
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }

    /// Only white space (as CelestialTree trims a type before checking it is there).
    static func isBlank(_ name: String) -> Bool {
        guard let first = name.utf8.first, first == 0x20 || first >= 0x80 || (first >= 0x09 && first <= 0x0D) else { return false }
        return name.unicodeScalars.allSatisfy(\.properties.isWhitespace)
    }

    /// Parent ids then parents by key, 0 and repeats dropped, order kept. Dense ids make
    /// existence a range check: every id in 1...lastID exists.
    private func resolveParents(_ r: AppendRequest, _ stage: GroupStage) throws(LogError) -> [EventID] {
        let total = r.parents.count + r.parentKeys.count
        var parents: [EventID] = []
        parents.reserveCapacity(total)
        // Most events name one to three parents: a linear scan beats allocating a set per event.
        var seen: Set<EventID>? = total > 16 ? Set(minimumCapacity: total) : nil
        func add(_ parent: EventID) {
            if seen != nil {
                if seen?.insert(parent).inserted == true { parents.append(parent) }
            } else if !parents.contains(parent) {
                parents.append(parent)
            }
        }
        for parent in r.parents where parent != 0 {
            guard parent <= stage.lastID else { throw LogError(.notFound, "parent \(parent) not found", field: "parents") }
            add(parent)
        }
        for key in r.parentKeys {
            guard let parent = try existingID(forKey: key, stage) else {
                throw LogError(.notFound, "parent key \"\(key)\" not found", field: "parent_keys")
            }
            add(parent)
        }
        return parents
    }

    /// False when the key whose hash is `hash` names no event, staged or stored (most new keys:
    /// no lookup at all).
    private func mayExist(hash: UInt64) -> Bool {
        !keysScanned || keyFilter.mayContain(hash: hash)
    }

    private func existingID(forKey key: String, _ stage: GroupStage) throws(LogError) -> EventID? {
        let hash = KeyFilter.hash(of: key)
        guard mayExist(hash: hash) else { return nil }
        if let staged = stagedEvent(forKey: key, hash: hash, stage) { return staged.id }
        return try storageCall { () throws(StorageError) in try storage.id(forKey: key) }
    }

    /// Who holds a key: an event, or one pruned from this store (only its id is left).
    enum KeyOwner {
        case event(Event)
        case pruned(EventID)

        var id: EventID {
            switch self {
            case .event(let e): e.id
            case .pruned(let id): id
            }
        }
    }

    private func existingEvent(forKey key: String, hash: UInt64, _ stage: GroupStage) throws(LogError) -> KeyOwner? {
        guard mayExist(hash: hash) else { return nil }
        if let staged = stagedEvent(forKey: key, hash: hash, stage) {
            let record = Array(staged.group.record(staged.id))
            return .event(try storageCall { () throws(StorageError) in try RecordCodec.decode(id: staged.id, record) })
        }
        let index = applier.index
        return try storageCall { () throws(StorageError) -> KeyOwner? in
            guard let id = try storage.id(forKey: key) else { return nil }
            // Read after the key, and again when the record is gone: a prune moves the first id
            // before it removes records.
            if id < index.firstID { return .pruned(id) }
            guard let event = try storage.event(id) else {
                if id < index.firstID { return .pruned(id) }
                throw StorageError(.corruption, "keys: \"\(key)\" names event \(id), which is missing")
            }
            return .event(event)
        }
    }

    /// A retry with the same key is a duplicate when everything the client chose is equal.
    /// The server-stamped time is not compared; an explicit (imported) time is.
    /// A compacted event compares by the size and checksum of what it dropped.
    static func sameContent(_ e: Event, _ r: AppendRequest, _ parents: [EventID]) -> Bool {
        let sameContent = e.compaction.map { $0.matches(message: r.message, payload: r.payload) } ?? (e.message == r.message && e.payload == r.payload)
        return e.type == r.type && e.parents == parents && e.stream == r.stream && sameContent
            && (r.timeUnixNano == nil || r.timeUnixNano == e.timeUnixNano)
    }

    /// `keyHash`: the `KeyFilter.hash` of the event's key, if it has one.
    private func put(_ event: Event, keyHash: UInt64, into stage: inout GroupStage) throws(LogError) {
        let id = event.id
        guard id <= EventID(LogIndex.capacity), stage.meta.edges + UInt64(event.parents.count) <= UInt64(LogIndex.capacity) else {
            throw LogError(.limitExceeded, "the store holds the most events and links one store can (\(LogIndex.capacity) each)")
        }
        RecordCodec.encode(event, into: &recordBuffer)
        let type = try dictionaryID(.type, event.type, &stage)
        var stream: UInt32 = 0
        if let name = event.stream { stream = try dictionaryID(.stream, name, &stage) }
        recordBuffer.bytes.withUnsafeBytes {
            stage.group.append(record: $0, entry: IndexBlock.Entry(type: type, stream: stream, parents: event.parents))
        }
        if let key = event.key {
            stage.keyed.insert(position: stage.group.keys.count, hash: keyHash, expected: stage.keysMax)
            stage.group.keys.append((key, id))
            keyFilter.insert(hash: keyHash)
        }
        stage.meta.edges += UInt64(event.parents.count)
        stage.segment.add(id: id, timeUnixNano: event.timeUnixNano, record: recordBuffer.bytes)
        if stage.segment.isFull(limits) {
            stage.group.seals.append(stage.segment.sealed())
            stage.segment = OpenSegment(first: id + 1)
        }
    }
}
