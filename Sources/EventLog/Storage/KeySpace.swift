/// The column families and key encodings of the store. Keys are big-endian so RocksDB's bytewise
/// order is numeric order: a prefix scan of `children` yields child ids ascending, a reverse scan
/// of `by_type` yields newest first.
///
/// | family      | key                               | value                               |
/// |-------------|-----------------------------------|-------------------------------------|
/// | `log`       | id (u64be)                        | `RecordCodec` record                |
/// | `parents`   | child id (u64be)                  | packed parent deltas (events with parents only) |
/// | `children`  | parent id ++ child id (u64be×2)   | empty                               |
/// | `by_type`   | type id (u32be) ++ id (u64be)     | empty                               |
/// | `by_stream` | stream id (u32be) ++ id (u64be)   | empty                               |
/// | `keys`      | client key (UTF-8)                | id (u64be)                          |
/// | `meta`      | name (see `MetaKey`)              | see `MetaKey`                       |
enum KeySpace {
    enum Family: Int, CaseIterable {
        case log, parents, children, byType, byStream, keys, meta

        var name: String {
            switch self {
            case .log: "log"
            case .parents: "parents"
            case .children: "children"
            case .byType: "by_type"
            case .byStream: "by_stream"
            case .keys: "keys"
            case .meta: "meta"
            }
        }

        var options: RocksDB.FamilyOptions {
            switch self {
            case .log: .init(name: name, compression: .zstd, bloomFilter: true)
            case .parents, .children: .init(name: name, compression: .zstd, bloomFilter: false)
            case .keys: .init(name: name, compression: .zstd, bloomFilter: true)
            case .byType, .byStream, .meta: .init(name: name, compression: .lz4, bloomFilter: false)
            }
        }
    }

    static func id(_ id: EventID) -> [UInt8] {
        var w = ByteWriter(capacity: 8)
        w.putBE64(id)
        return w.bytes
    }

    static func edge(_ parent: EventID, _ child: EventID) -> [UInt8] {
        var w = ByteWriter(capacity: 16)
        w.putBE64(parent)
        w.putBE64(child)
        return w.bytes
    }

    static func indexed(_ dictionaryID: UInt32, _ id: EventID) -> [UInt8] {
        var w = ByteWriter(capacity: 12)
        w.putBE32(dictionaryID)
        w.putBE64(id)
        return w.bytes
    }

    static func indexPrefix(_ dictionaryID: UInt32) -> [UInt8] {
        var w = ByteWriter(capacity: 4)
        w.putBE32(dictionaryID)
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
/// | `format_version`            | u32be, currently 1                                        |
/// | `epoch_history`             | repeated (epoch u64be, first id u64be)                    |
/// | `stats`                     | edges u64be (parent links stored)                         |
/// | `type/<name>`               | type id u32be (dictionary for `by_type`)                  |
/// | `stream/<name>`             | stream id u32be (dictionary for `by_stream`)              |
/// | `root/<id u64be>`           | empty: the event has no parents                           |
/// | `head/<id u64be>`           | empty: the event has no children (yet)                    |
/// | `segment/<first id u64be>`  | `SegmentManifest.Entry` of a sealed segment               |
enum MetaKey {
    static let formatVersion = Array("format_version".utf8)
    static let epochHistory = Array("epoch_history".utf8)
    static let stats = Array("stats".utf8)
    static let typePrefix = Array("type/".utf8)
    static let streamPrefix = Array("stream/".utf8)
    static let rootPrefix = Array("root/".utf8)
    static let headPrefix = Array("head/".utf8)
    static let segmentPrefix = Array("segment/".utf8)

    static func type(_ name: String) -> [UInt8] { typePrefix + Array(name.utf8) }
    static func stream(_ name: String) -> [UInt8] { streamPrefix + Array(name.utf8) }
    static func root(_ id: EventID) -> [UInt8] { rootPrefix + KeySpace.id(id) }
    static func head(_ id: EventID) -> [UInt8] { headPrefix + KeySpace.id(id) }
    static func segment(_ first: EventID) -> [UInt8] { segmentPrefix + KeySpace.id(first) }
}
