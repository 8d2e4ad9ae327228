/// The column families and key encodings of the store. Keys are big-endian so RocksDB's bytewise
/// order is numeric order.
///
/// | family  | key                       | value                                               |
/// |---------|---------------------------|-----------------------------------------------------|
/// | `log`   | id (u64be)                | `RecordCodec` record                                |
/// | `index` | first id of a group (u64be) | `IndexBlock`: type, stream and parents of the group's events |
/// | `keys`  | client key (UTF-8)        | id (u64be)                                          |
/// | `meta`  | name (see `MetaKey`)      | see `MetaKey`                                       |
///
/// Children, roots, heads and the by-type and by-stream views are not stored: `LogIndex` derives
/// them in memory from the `index` family at open.
enum KeySpace {
    enum Family: Int, CaseIterable {
        case log, index, keys, meta

        var name: String {
            switch self {
            case .log: "log"
            case .index: "index"
            case .keys: "keys"
            case .meta: "meta"
            }
        }

        var options: RocksDB.FamilyOptions {
            switch self {
            case .log: .init(name: name, compression: .lz4ThenZstd, bloomFilter: true, insertHint: true)
            // No `memtableFilter` here: `LogStorage.init(keyLookups:)` decides it at the open.
            case .keys: .init(name: name, compression: .lz4ThenZstd, bloomFilter: true, insertHint: true)
            case .index: .init(name: name, compression: .lz4ThenZstd, bloomFilter: false)
            case .meta: .init(name: name, compression: .lz4, bloomFilter: false)
            }
        }
    }

    static func id(_ id: EventID) -> [UInt8] {
        var w = ByteWriter(capacity: 8)
        w.putBE64(id)
        return w.bytes
    }

    /// The smallest key greater than every key starting with `prefix` (for exclusive upper bounds).
    static func successor(ofPrefix prefix: [UInt8]) -> [UInt8]? {
        var bytes = prefix
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return nil
    }
}

/// Names in the `meta` column family.
///
/// | key                         | value                                                     |
/// |-----------------------------|-----------------------------------------------------------|
/// | `format_version`            | u32be, currently 2                                        |
/// | `epoch_history`             | repeated (epoch u64be, first id u64be)                    |
/// | `stats`                     | edges u64be, next type id u32be, next stream id u32be     |
/// | `type/<name>`               | type id u32be, from 1 (dictionary for `index` blocks)     |
/// | `stream/<name>`             | stream id u32be, from 1 (dictionary for `index` blocks)   |
/// | `segment/<first id u64be>`  | `SegmentEntry` of a sealed segment (44 bytes)             |
/// | `confirmed_id`              | u64be; this node's own, never shipped (replication)       |
/// | `compaction_progress`       | control id u64be, last id done u64be; node-local          |
/// | `compaction_done`           | u64be: the last compaction control event carried out here  |
/// | `pruned_prefix`             | `PrunedPrefix`: what a prune removed; node-local          |
enum MetaKey {
    static let formatVersion = Array("format_version".utf8)
    static let epochHistory = Array("epoch_history".utf8)
    static let stats = Array("stats".utf8)
    static let confirmedID = Array("confirmed_id".utf8)
    static let compactionProgress = Array("compaction_progress".utf8)
    static let compactionDone = Array("compaction_done".utf8)
    static let prunedPrefix = Array("pruned_prefix".utf8)
    /// Keys each node keeps for itself: never shipped, left out of `replicatedDigest`.
    static let nodeLocal = [confirmedID, compactionProgress, compactionDone, prunedPrefix]
    static let typePrefix = Array("type/".utf8)
    static let streamPrefix = Array("stream/".utf8)
    static let segmentPrefix = Array("segment/".utf8)

    static func type(_ name: String) -> [UInt8] { typePrefix + Array(name.utf8) }
    static func stream(_ name: String) -> [UInt8] { streamPrefix + Array(name.utf8) }
    static func segment(_ first: EventID) -> [UInt8] { segmentPrefix + KeySpace.id(first) }
}
