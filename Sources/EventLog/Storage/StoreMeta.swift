/// The store-wide facts kept in `meta` and loaded at open: format version, epoch history and
/// counters that would otherwise need a full scan.
struct StoreMeta: Sendable, Hashable {
    static let formatVersion: UInt32 = 2

    /// (epoch, first id of that epoch), ascending. A new store starts with [(1, 1)].
    var epochHistory: [(epoch: UInt64, firstID: EventID)]
    /// Parent links stored so far.
    var edges: UInt64
    var nextTypeID: UInt32
    var nextStreamID: UInt32

    static let fresh = StoreMeta(epochHistory: [(1, 1)], edges: 0, nextTypeID: 1, nextStreamID: 1)

    var currentEpoch: UInt64 { epochHistory.last?.epoch ?? 1 }

    static func == (a: StoreMeta, b: StoreMeta) -> Bool {
        a.edges == b.edges && a.nextTypeID == b.nextTypeID && a.nextStreamID == b.nextStreamID
            && a.epochHistory.elementsEqual(b.epochHistory, by: { $0 == $1 })
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(edges)
        hasher.combine(nextTypeID)
    }

    func encodedStats() -> [UInt8] {
        var w = ByteWriter(capacity: 16)
        w.putBE64(edges)
        w.putBE32(nextTypeID)
        w.putBE32(nextStreamID)
        return w.bytes
    }

    func encodedEpochHistory() -> [UInt8] {
        Self.encodedEpochHistory(epochHistory)
    }

    static func encodedEpochHistory(_ history: [(epoch: UInt64, firstID: EventID)]) -> [UInt8] {
        var w = ByteWriter(capacity: 16 * history.count)
        for (epoch, first) in history {
            w.putBE64(epoch)
            w.putBE64(first)
        }
        return w.bytes
    }

    static func encodedFormatVersion() -> [UInt8] {
        var w = ByteWriter(capacity: 4)
        w.putBE32(formatVersion)
        return w.bytes
    }

    /// Loads the meta of an existing store; nil when the store has never been initialised.
    static func load(_ storage: LogStorage) throws(StorageError) -> StoreMeta? {
        guard let version = try storage.meta(MetaKey.formatVersion) else { return nil }
        var vr = ByteReader(version)
        let found = try vr.be32()
        guard found == formatVersion else {
            throw StorageError(.invalidArgument, "store format version \(found) is not supported (this build reads \(formatVersion))")
        }
        guard let history = try storage.meta(MetaKey.epochHistory), history.count % 16 == 0, !history.isEmpty else {
            throw StorageError(.corruption, "meta: epoch history missing or malformed")
        }
        var hr = ByteReader(history)
        var epochs: [(UInt64, EventID)] = []
        while !hr.isAtEnd { epochs.append((try hr.be64(), try hr.be64())) }
        guard let stats = try storage.meta(MetaKey.stats) else { throw StorageError(.corruption, "meta: stats missing") }
        var sr = ByteReader(stats)
        let meta = StoreMeta(epochHistory: epochs, edges: try sr.be64(), nextTypeID: try sr.be32(), nextStreamID: try sr.be32())
        return meta
    }
}

/// What a prune removed (docs/STORAGE.md, "The pruned prefix"): the events `1..<firstID` are gone
/// from `log` and `index` (their keys stay, for idempotency), and these totals stand in for them
/// where the store and `verify` count the whole history. Node-local: each node prunes its own log.
public struct PrunedPrefix: Sendable, Hashable {
    /// One prune's archive: it holds the events from the previous prune's first id (1 for the
    /// first prune) up to its snapshot id, which reaches at least `firstID - 1`.
    public struct Archive: Sendable, Hashable {
        /// The store's first id after that prune.
        public var firstID: EventID
        /// The archive's file name.
        public var name: String

        public init(firstID: EventID, name: String) {
            self.firstID = firstID
            self.name = name
        }
    }

    /// The lowest id the store still holds.
    public var firstID: EventID
    /// Parent links of the pruned events.
    public var edgesBelow: UInt64
    /// Keyed pruned events (their `keys` entries remain).
    public var keysBelow: UInt64
    /// Type and stream dictionary ids first used by the pruned events (`LogIndex.dictionaryIDs`).
    public var typesBelow: UInt32
    public var streamsBelow: UInt32
    /// Every prune's archive, oldest first: together they hold every pruned event.
    public var archives: [Archive]

    static let fixedBytes = 32
    /// Each archive's name is at most this long (a file name).
    static let archiveNameBytesMax = 255

    /// The archive that holds `id` (below `firstID`).
    public func archive(holding id: EventID) -> String {
        (archives.first { id < $0.firstID } ?? archives.last)?.name ?? "?"
    }

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: Self.fixedBytes + archives.reduce(0) { $0 + 12 + $1.name.utf8.count })
        w.putBE64(firstID)
        w.putBE64(edgesBelow)
        w.putBE64(keysBelow)
        w.putBE32(typesBelow)
        w.putBE32(streamsBelow)
        for archive in archives {
            w.putBE64(archive.firstID)
            w.putBE32(UInt32(archive.name.utf8.count))
            w.bytes += Array(archive.name.utf8)
        }
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(StorageError) -> PrunedPrefix {
        guard bytes.count >= fixedBytes else { throw StorageError(.corruption, "meta: pruned prefix is \(bytes.count) bytes") }
        var r = ByteReader(bytes)
        var prefix = PrunedPrefix(
            firstID: try r.be64(), edgesBelow: try r.be64(), keysBelow: try r.be64(), typesBelow: try r.be32(), streamsBelow: try r.be32(),
            archives: [])
        var previous: EventID = 1
        while !r.isAtEnd {
            let first = try r.be64()
            let length = try r.be32()
            guard length <= archiveNameBytesMax, first > previous else {
                throw StorageError(.corruption, "meta: pruned prefix: archive entry \(prefix.archives.count) is malformed")
            }
            prefix.archives.append(Archive(firstID: first, name: String(decoding: try r.bytes(count: Int(length)), as: UTF8.self)))
            previous = first
        }
        guard prefix.firstID >= 2, prefix.archives.last?.firstID == prefix.firstID else {
            throw StorageError(.corruption, "meta: pruned prefix starts at \(prefix.firstID) but its archives end at \(prefix.archives.last?.firstID ?? 1)")
        }
        return prefix
    }

    static func load(_ storage: LogStorage) throws(StorageError) -> PrunedPrefix? {
        try storage.meta(MetaKey.prunedPrefix).map { bytes throws(StorageError) in try decode(bytes) }
    }

    /// The error every read below the prefix answers.
    func error(_ id: EventID) -> LogError {
        LogError(.pruned, "event \(id) was pruned: this store holds ids from \(firstID); restore snapshot \(archive(holding: id)) to read it")
    }

    /// The error of a read of the log from `after` that would silently skip pruned events.
    func error(after: EventID) -> LogError {
        LogError(.pruned, "events \(after + 1)...\(firstID - 1) were pruned: read after \(firstID - 1), or restore snapshot \(archive(holding: after + 1)) to read them")
    }
}
