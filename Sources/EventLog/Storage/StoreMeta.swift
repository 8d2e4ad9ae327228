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
