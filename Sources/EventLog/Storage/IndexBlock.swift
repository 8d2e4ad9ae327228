/// The `index` family value: what the in-memory `LogIndex` needs of every event of one commit
/// group (type and stream dictionary ids, parents), written in the same WriteBatch as the group's
/// records under the group's first id. One key per group instead of five or more per event is
/// what lets appends run at RocksDB's batch speed (docs/STORAGE.md).
///
/// Layout: version byte (1), event count (varint), then per event: type id (varint), stream id
/// (varint, 0 = no stream), parents as in the record (count, then `id - parent` deltas, varints);
/// then CRC32C (u32be) of the first id (u64be) followed by everything before it.
struct IndexBlock: Equatable {
    static let version: UInt8 = 1

    struct Entry: Equatable {
        var type: UInt32
        /// 0: the event has no stream.
        var stream: UInt32
        var parents: [EventID]
    }

    var first: EventID
    var entries: [Entry]

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 8 + entries.count * 6)
        w.bytes.append(Self.version)
        w.putVarint(UInt64(entries.count))
        for (offset, entry) in entries.enumerated() {
            w.putVarint(UInt64(entry.type))
            w.putVarint(UInt64(entry.stream))
            RecordCodec.putParents(&w, id: first + EventID(offset), entry.parents)
        }
        w.putBE32(RecordCodec.checksum(id: first, w.bytes[...]))
        return w.bytes
    }

    static func decode(first: EventID, _ bytes: [UInt8]) throws(StorageError) -> IndexBlock {
        guard bytes.count >= 6 else { throw StorageError(.corruption, "index block \(first): \(bytes.count) bytes") }
        let body = bytes[..<(bytes.count - 4)]
        guard UInt32(bigEndianBytes: bytes.suffix(4)) == RecordCodec.checksum(id: first, body) else {
            throw StorageError(.corruption, "index block \(first): checksum mismatch")
        }
        var r = ByteReader(bytes, end: body.count)
        let version = try r.byte()
        guard version == Self.version else { throw StorageError(.corruption, "index block \(first): unknown version \(version)") }
        let count = try r.varint()
        guard count >= 1, count <= UInt64(body.count) else { throw StorageError(.corruption, "index block \(first): count \(count)") }
        var entries: [Entry] = []
        entries.reserveCapacity(Int(count))
        for offset in 0..<count {
            let type = try r.varint()
            let stream = try r.varint()
            guard type <= UInt64(UInt32.max), stream <= UInt64(UInt32.max) else {
                throw StorageError(.corruption, "index block \(first): dictionary id out of range")
            }
            let parents = try RecordCodec.readParents(&r, id: first + offset)
            entries.append(Entry(type: UInt32(type), stream: UInt32(stream), parents: parents))
        }
        guard r.isAtEnd else { throw StorageError(.corruption, "index block \(first): trailing bytes") }
        return IndexBlock(first: first, entries: entries)
    }
}
