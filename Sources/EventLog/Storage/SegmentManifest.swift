/// Segments divide the log into id ranges. A segment is sealed when it reaches
/// `Limits.segmentEventsMax` events or `Limits.segmentBytesMax` record bytes; sealing writes a
/// manifest entry in the same WriteBatch as the segment's last record, so the manifest never
/// runs ahead of the log. Segments are the unit of shipping, snapshot coverage and retention.
///
/// Entry value (`meta` key `segment/<first id u64be>`), 44 bytes:
/// first id, last id, first time, last time, record bytes (u64be each), then the CRC-32C
/// chained over the records' own checksums (their last 4 bytes) in id order (u32be). Each record
/// checksum covers its bytes and id, so chaining those detects any changed, missing or reordered
/// record without hashing every byte twice on the write path.
struct SegmentEntry: Sendable, Hashable {
    var first: EventID
    var last: EventID
    var firstTimeUnixNano: Int64
    var lastTimeUnixNano: Int64
    var bytes: UInt64
    var checksum: UInt32

    var count: UInt64 { last - first + 1 }

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 44)
        w.putBE64(first)
        w.putBE64(last)
        w.putBE64(UInt64(bitPattern: firstTimeUnixNano))
        w.putBE64(UInt64(bitPattern: lastTimeUnixNano))
        w.putBE64(bytes)
        w.putBE32(checksum)
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(StorageError) -> SegmentEntry {
        var r = ByteReader(bytes)
        let entry = SegmentEntry(
            first: try r.be64(), last: try r.be64(),
            firstTimeUnixNano: Int64(bitPattern: try r.be64()), lastTimeUnixNano: Int64(bitPattern: try r.be64()),
            bytes: try r.be64(), checksum: try r.be32())
        guard r.isAtEnd, entry.first >= 1, entry.last >= entry.first else {
            throw StorageError(.corruption, "segment manifest entry \(entry.first)-\(entry.last) is malformed")
        }
        return entry
    }
}

/// The open (unsealed) segment as the writer accumulates it. Rebuilt on open by re-reading the
/// records after the last sealed segment, which is at most one segment's worth of work.
struct OpenSegment: Sendable, Hashable {
    var first: EventID
    var last: EventID = 0
    var firstTimeUnixNano: Int64 = 0
    var lastTimeUnixNano: Int64 = 0
    var bytes: UInt64 = 0
    var checksum: UInt32 = 0

    init(first: EventID) {
        self.first = first
    }

    var isEmpty: Bool { last < first }
    var count: UInt64 { isEmpty ? 0 : last - first + 1 }

    mutating func add(id: EventID, timeUnixNano: Int64, record: some RandomAccessCollection<UInt8>) {
        precondition(id == (isEmpty ? first : last + 1), "segment \(first): record \(id) out of order")
        if isEmpty { firstTimeUnixNano = timeUnixNano }
        last = id
        lastTimeUnixNano = timeUnixNano
        bytes += RecordCodec.originalSize(of: record)
        checksum = CRC32C.update(checksum, record.suffix(4))
    }

    func isFull(_ limits: Limits) -> Bool {
        count >= UInt64(limits.segmentEventsMax) || bytes >= UInt64(limits.segmentBytesMax)
    }

    func sealed() -> SegmentEntry {
        SegmentEntry(
            first: first, last: last, firstTimeUnixNano: firstTimeUnixNano,
            lastTimeUnixNano: lastTimeUnixNano, bytes: bytes, checksum: checksum)
    }
}
