/// Which events a log read returns. Every condition must hold.
public struct LogFilter: Sendable, Hashable {
    public var type: String?
    public var stream: String?
    /// Inclusive lower and exclusive upper bound on `time_unix_nano`.
    public var since: Int64?
    public var until: Int64?

    public init(type: String? = nil, stream: String? = nil, since: Int64? = nil, until: Int64? = nil) {
        self.type = type
        self.stream = stream
        self.since = since
        self.until = until
    }

    public var isEmpty: Bool { type == nil && stream == nil && since == nil && until == nil }

    func matches(_ event: Event) -> Bool {
        if let type, event.type != type { return false }
        if let stream, event.stream != stream { return false }
        if let since, event.timeUnixNano < since { return false }
        if let until, event.timeUnixNano >= until { return false }
        return true
    }
}

/// One page of a log read.
public struct LogPage: Sendable {
    public var events: [Event]
    /// The `after` of the next page: every id up to it has been examined, so paging by it never
    /// skips or repeats an event, however many are appended meanwhile.
    public var next: EventID
    /// The last committed id when the page was read.
    public var lastID: EventID
}

extension EventStore {
    /// Reads matching events with ids greater than `after`, in id order: at most `limit` events,
    /// decoding at most `scanMax` records (so a selective time filter cannot make one request read
    /// the whole log) and about `Limits.readBytesMax` record bytes. A type or stream condition is
    /// first applied to the in-memory columns (`LogIndex`), so only records of that type or stream
    /// are read.
    public func page(after: EventID, limit: Int, filter: LogFilter = LogFilter(), scanMax: Int? = nil) throws(LogError) -> LogPage {
        let last = lastID
        let eventsMax = max(1, min(limit, limits.readEventsMax))
        let scanMax = max(1, scanMax ?? limits.scanIDsMax)
        // A cursor past the end (from a store that was since restored, say) comes back as the end,
        // so "read until next == last_id" always terminates.
        guard after < last else { return LogPage(events: [], next: last, lastID: last) }
        try checkNotPruned(after: after)
        var typeID: UInt32?
        var streamID: UInt32?
        if let type = filter.type {
            guard let id = try dictionaryID(MetaKey.type(type)) else { return LogPage(events: [], next: last, lastID: last) }
            typeID = id
        }
        if let stream = filter.stream {
            guard let id = try dictionaryID(MetaKey.stream(stream)) else { return LogPage(events: [], next: last, lastID: last) }
            streamID = id
        }
        if typeID == nil && streamID == nil {
            return try logScan(after: after, last: last, eventsMax: eventsMax, filter: filter, scanMax: scanMax)
        }
        var events: [Event] = []
        var examined = 0
        var bytes = 0
        var position = after
        var columnBudget = limits.columnScanIDsMax
        while position < last, columnBudget > 0 {
            let want = min(eventsMax - events.count, scanMax - examined)
            let (ids, scannedTo) = index.scan(type: typeID, stream: streamID, after: position, upTo: last, limit: want, scanMax: columnBudget)
            columnBudget -= Int(scannedTo - position)
            for id in ids {
                if events.count >= eventsMax || examined >= scanMax || bytes >= limits.readBytesMax {
                    return LogPage(events: events, next: position, lastID: last)
                }
                guard let record = try read({ () throws(StorageError) in try storage.record(id) }) else {
                    try checkNotPruned(id)  // pruned meanwhile
                    throw LogError(.storage, "log: event \(id) is indexed but missing")
                }
                let event = try read { () throws(StorageError) in try RecordCodec.decode(id: id, record) }
                examined += 1
                position = id
                if filter.matches(event) {
                    bytes += record.count
                    events.append(event)
                }
            }
            position = scannedTo
            if events.count >= eventsMax || examined >= scanMax || bytes >= limits.readBytesMax { break }
        }
        return LogPage(events: events, next: position, lastID: last)
    }

    /// Ids in `after+1 ... upTo` of events with this type and stream (nil: any), ascending, read
    /// from the in-memory columns without touching a record: at most `limit` ids, examining at
    /// most `scanMax`. `next` is the last id examined (`upTo` once the range is exhausted); an
    /// unknown type or stream matches nothing.
    public func scanIDs(type: String?, stream: String?, after: EventID, upTo: EventID, limit: Int, scanMax: Int) throws(LogError) -> (ids: [EventID], next: EventID) {
        let upTo = min(upTo, lastID)
        guard after < upTo else { return ([], max(after, upTo)) }
        var typeID: UInt32?
        var streamID: UInt32?
        if let type {
            guard let id = try dictionaryID(MetaKey.type(type)) else { return ([], upTo) }
            typeID = id
        }
        if let stream {
            guard let id = try dictionaryID(MetaKey.stream(stream)) else { return ([], upTo) }
            streamID = id
        }
        return index.scan(type: typeID, stream: streamID, after: after, upTo: upTo, limit: max(0, limit), scanMax: max(1, scanMax))
    }

    private func logScan(after: EventID, last: EventID, eventsMax: Int, filter: LogFilter, scanMax: Int) throws(LogError) -> LogPage {
        try read { () throws(StorageError) -> LogPage in
            var events: [Event] = []
            var examined = 0
            var bytes = 0
            var position = after
            let it = try storage.db.iterator(storage.cf(.log), lower: KeySpace.id(after + 1), upper: KeySpace.id(last + 1))
            it.seekToFirst()
            while it.isValid {
                if events.count >= eventsMax || examined >= scanMax || bytes >= limits.readBytesMax {
                    return LogPage(events: events, next: position, lastID: last)
                }
                let id = it.withKey { LogStorage.be64($0, at: 0) }
                let record = it.value
                let event = try RecordCodec.decode(id: id, record)
                examined += 1
                position = id
                if filter.matches(event) {
                    bytes += record.count
                    events.append(event)
                }
                it.next()
            }
            try it.checkStatus()
            // The range is exhausted: every id up to `last` has been examined.
            return LogPage(events: events, next: last, lastID: last)
        }
    }
}
