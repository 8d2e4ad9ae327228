import Synchronization

/// `CommitStorage` in memory, for tests and the deterministic simulator: every family a sorted
/// map of bytes, written exactly as `LogStorage` writes RocksDB, so two stores can be compared
/// byte for byte. `crash()` drops what was written since the last sync, as a power cut would.
final class MemoryCommitStorage: CommitStorage {
    struct Families: Equatable {
        var log: [EventID: [UInt8]] = [:]
        var index: [EventID: [UInt8]] = [:]
        var keys: [KeyBytes: EventID] = [:]
        var meta: [[UInt8]: [UInt8]] = [:]
    }

    private struct State {
        var written = Families()
        var synced = Families()
    }

    private let state = Mutex(State())

    init() {}

    /// What the store holds now (written, synced or not).
    var families: Families { state.withLock { $0.written } }

    /// Tests: called with each group before it is written, on the writing thread (to hold a
    /// group in flight). Set before the first write.
    nonisolated(unsafe) var beforeWrite: (@Sendable (CommitGroup) -> Void)?

    func write(_ group: CommitGroup, epochHistory: [(epoch: UInt64, firstID: EventID)]?, sync: Bool) throws(StorageError) {
        beforeWrite?(group)
        state.withLock { s in
            var id = group.first
            while id <= group.last {
                s.written.log[id] = Array(group.record(id))
                id += 1
            }
            for (key, keyID) in group.keys { s.written.keys[KeyBytes(key)] = keyID }
            for name in group.names {
                s.written.meta[name.kind == .type ? MetaKey.type(name.name) : MetaKey.stream(name.name)] = ByteWriter.be32(name.id)
            }
            for seal in group.seals { s.written.meta[MetaKey.segment(seal.first)] = seal.encoded() }
            if let epochHistory { s.written.meta[MetaKey.epochHistory] = StoreMeta.encodedEpochHistory(epochHistory) }
            s.written.meta[MetaKey.stats] = group.stats.encodedStats()
            s.written.index[group.first] = IndexBlock(first: group.first, entries: group.entries).encoded()
            if sync { s.synced = s.written }
        }
    }

    func syncWAL() throws(StorageError) {
        state.withLock { $0.synced = $0.written }
    }

    /// Loses everything written since the last sync.
    func crash() {
        state.withLock { $0.written = $0.synced }
    }

    /// Every `sequencerLooksUpKeys` asked, in order (tests).
    let keyLookupCalls = Mutex<[Bool]>([])

    func sequencerLooksUpKeys(_ on: Bool) throws(StorageError) {
        keyLookupCalls.withLock { $0.append(on) }
    }

    func forEachKey(while proceed: () -> Bool, _ body: (UnsafeRawBufferPointer) -> Void) throws(StorageError) {
        for key in state.withLock({ Array($0.written.keys.keys) }) {
            guard proceed() else { return }
            var key = key.key
            key.withUTF8 { body(UnsafeRawBufferPointer($0)) }
        }
    }

    func keyCountEstimate() -> Int { state.withLock { $0.written.keys.count } }

    func id(forKey key: String) throws(StorageError) -> EventID? {
        state.withLock { $0.written.keys[KeyBytes(key)] }
    }

    func event(_ id: EventID) throws(StorageError) -> Event? {
        guard let record = state.withLock({ $0.written.log[id] }) else { return nil }
        return try RecordCodec.decode(id: id, record)
    }

    func dictionaryID(_ kind: DictionaryKind, _ name: String) throws(StorageError) -> UInt32? {
        guard let value = state.withLock({ $0.written.meta[kind == .type ? MetaKey.type(name) : MetaKey.stream(name)] }) else { return nil }
        var r = ByteReader(value)
        return try r.be32()
    }
}
