/// The versioned, checksummed binary encoding of one event in the `log` column family.
///
/// Layout (format version 1), the key being the 8-byte big-endian id:
/// ```
/// u8      version (1)
/// u8      flags: bit0 key, bit1 stream, bit2 message, bit3 payload
/// varint  epoch
/// zigzag  time_unix_nano
/// bytes   type                       (varint length + UTF-8)
/// varint  parent count, then per parent varint (id - parent)   (> 0: parents precede the child)
/// bytes   key      (if flag)
/// bytes   stream   (if flag)
/// bytes   message  (if flag)
/// bytes   payload  (if flag; compact JSON text)
/// u32be   CRC-32C of (id as u64be ++ every byte above)
/// ```
/// The id is inside the checksum so a record copied under the wrong key is detected.
/// Decoding checks the version, every length, the checksum and the parent rule.
///
/// A compacted record (flag bit4; docs/STORAGE.md) keeps everything up to the stream, replaces
/// the message and payload by their sizes and CRC-32C, and ends with its own checksum followed by
/// the original record's: the last 4 bytes stay the segment chain's link, and decoding proves
/// that link from the kept bytes and the dropped parts' checksums (`CRC32C.combine`).
enum RecordCodec {
    static let version: UInt8 = 1

    enum Flag {
        static let key: UInt8 = 1
        static let stream: UInt8 = 2
        static let message: UInt8 = 4
        static let payload: UInt8 = 8
        static let compacted: UInt8 = 16
        static let known: UInt8 = 31
    }

    static func encode(_ event: Event) -> [UInt8] {
        var w = ByteWriter(capacity: 48 + event.type.utf8.count + (event.payload?.count ?? 0) + (event.message?.utf8.count ?? 0))
        encode(event, into: &w)
        return w.bytes
    }

    /// Encodes into `w`, replacing what it held but keeping its capacity: the writer reuses one
    /// buffer for every record rather than allocating one per event.
    static func encode(_ event: Event, into w: inout ByteWriter) {
        w.bytes.removeAll(keepingCapacity: true)
        w.bytes.append(version)
        var flags: UInt8 = 0
        if event.key != nil { flags |= Flag.key }
        if event.stream != nil { flags |= Flag.stream }
        if event.message != nil { flags |= Flag.message }
        if event.payload != nil { flags |= Flag.payload }
        w.bytes.append(flags)
        w.putVarint(event.epoch)
        w.putZigzag(event.timeUnixNano)
        w.putString(event.type)
        putParents(&w, id: event.id, event.parents)
        if let key = event.key { w.putString(key) }
        if let stream = event.stream { w.putString(stream) }
        if let message = event.message { w.putString(message) }
        if let payload = event.payload { w.putBytes(payload) }
        let crc = checksum(id: event.id, w.bytes[...])
        w.putBE32(crc)
    }

    static func decode(id: EventID, _ bytes: [UInt8]) throws(StorageError) -> Event {
        try parse(id: id, bytes, checkText: false).event()
    }

    /// Checks a record (version, flags, every length, the checksum, the parent rule, a
    /// compacted record's link, and with `checkText` that its strings are UTF-8) and finds its
    /// members in place, copying nothing. Without `checkText` the caller must build the event
    /// (`StoredRecord.event()`, which checks them as it decodes them) rather than write its
    /// members: checking them twice cost a filter query 8%.
    static func parse(id: EventID, _ bytes: [UInt8], checkText: Bool = true) throws(StorageError) -> StoredRecord {
        guard let end = ownChecksumStart(bytes[...]) else { throw StorageError(.corruption, "record \(id): \(bytes.count) bytes is too short") }
        let compacted = isCompacted(bytes)
        let body = bytes[0..<end]
        let stored = UInt32(bigEndianBytes: bytes[end..<(end + 4)])
        let computed = checksum(id: id, body)
        guard stored == computed else {
            throw StorageError(.corruption, "record \(id): checksum mismatch (stored \(stored), computed \(computed))")
        }
        var r = ByteReader(bytes, end: end)
        let version = try r.byte()
        guard version == Self.version else {
            throw StorageError(.corruption, "record \(id): unknown record format version \(version)")
        }
        let flags = try r.byte()
        guard flags & ~Flag.known == 0 else { throw StorageError(.corruption, "record \(id): unknown flags \(flags)") }
        func text() throws(StorageError) -> Range<Int> {
            let raw = try r.lengthPrefixed()
            guard !checkText || StoredRecord.isUTF8(raw) else { throw StoredRecord.notUTF8(at: r.offset) }
            return raw.indices
        }
        let epoch = try r.varint()
        let time = try r.zigzag()
        let type = try text()
        let parentsStart = r.offset
        let parentCount = try checkParents(&r, id: id)
        let parents = parentsStart..<r.offset
        let key = flags & Flag.key != 0 ? try text() : nil
        let stream = flags & Flag.stream != 0 ? try text() : nil
        var record = StoredRecord(
            id: id, bytes: bytes, epoch: epoch, timeUnixNano: time, type: type, parents: parents, parentCount: parentCount, key: key, stream: stream,
            textChecked: checkText)
        if compacted {
            let skeletonEnd = r.offset
            var dropped = Event.Compaction()
            if flags & Flag.message != 0 { (dropped.messageBytes, dropped.messageCRC) = (try droppedLength(&r, id), try r.be32()) }
            if flags & Flag.payload != 0 { (dropped.payloadBytes, dropped.payloadCRC) = (try droppedLength(&r, id), try r.be32()) }
            guard r.isAtEnd else { throw StorageError(.corruption, "record \(id): \(r.end - r.offset) trailing bytes") }
            let link = UInt32(bigEndianBytes: bytes.suffix(4))
            let original = originalChecksum(id: id, skeleton: body[0..<skeletonEnd], dropped)
            guard link == original else {
                throw StorageError(.corruption, "record \(id): the compacted record does not prove its original checksum (link \(link), proven \(original))")
            }
            record.compaction = dropped
        } else {
            record.message = flags & Flag.message != 0 ? try text() : nil
            record.payload = flags & Flag.payload != 0 ? try r.lengthPrefixed().indices : nil
            guard r.isAtEnd else { throw StorageError(.corruption, "record \(id): \(r.end - r.offset) trailing bytes") }
        }
        return record
    }

    /// The compacted form of a record: its skeleton, the sizes and checksums of its message and
    /// payload, its own checksum and the original's. Nil when there is nothing to drop (no
    /// message or payload, or already compacted). `record` must be sound (decoded before).
    static func compacted(id: EventID, _ record: [UInt8], event: Event) -> [UInt8]? {
        guard event.compaction == nil, event.message != nil || event.payload != nil else { return nil }
        var skeleton = event
        skeleton.message = nil
        skeleton.payload = nil
        var w = ByteWriter(capacity: record.count)
        encode(skeleton, into: &w)
        w.bytes.removeLast(4)
        w.bytes[1] |= Flag.compacted | (event.message != nil ? Flag.message : 0) | (event.payload != nil ? Flag.payload : 0)
        if let message = event.message {
            w.putVarint(UInt64(message.utf8.count))
            w.putBE32(CRC32C.checksum(Array(message.utf8)))
        }
        if let payload = event.payload {
            w.putVarint(UInt64(payload.count))
            w.putBE32(CRC32C.checksum(payload))
        }
        w.putBE32(checksum(id: id, w.bytes[...]))
        w.bytes += record.suffix(4)
        return w.bytes
    }

    /// The checksum the record had before compaction, from its skeleton (flags as compacted) and
    /// what was dropped: CRC(id ++ skeleton with the original flags ++ message ++ payload), the
    /// dropped bytes entering through `CRC32C.combine`.
    private static func originalChecksum(id: EventID, skeleton: ArraySlice<UInt8>, _ dropped: Event.Compaction) -> UInt32 {
        var prefix = Array(skeleton)
        prefix[1] &= ~Flag.compacted
        var crc = checksum(id: id, prefix[...])
        func add(_ size: UInt64, _ partCRC: UInt32) {
            var w = ByteWriter(capacity: 10)
            w.putVarint(size)
            crc = CRC32C.combine(CRC32C.update(crc, w.bytes), partCRC, lengthB: size)
        }
        if let size = dropped.messageBytes, let partCRC = dropped.messageCRC { add(size, partCRC) }
        if let size = dropped.payloadBytes, let partCRC = dropped.payloadCRC { add(size, partCRC) }
        return crc
    }

    /// The size the record had before compaction (what segment accounting counts, so seals and
    /// `verify` agree before and after): its own size when it is not compacted.
    static func originalSize(of record: some RandomAccessCollection<UInt8>) -> UInt64 {
        guard isCompacted(record), let size = try? decodeSkeletonSizes(Array(record)) else { return UInt64(record.count) }
        return size
    }

    static func isCompacted(_ record: some RandomAccessCollection<UInt8>) -> Bool {
        record.count >= 2 && record[record.index(after: record.startIndex)] & Flag.compacted != 0
    }

    /// Original size of a compacted record: skeleton + each dropped part as it was encoded
    /// (varint length + bytes) + the checksum.
    private static func decodeSkeletonSizes(_ bytes: [UInt8]) throws(StorageError) -> UInt64 {
        var r = ByteReader(bytes, end: bytes.count - 8)
        _ = try r.byte()
        let flags = try r.byte()
        _ = try r.varint()
        _ = try r.varint()
        _ = try r.lengthPrefixed()
        let parents = try r.varint()
        for _ in 0..<parents { _ = try r.varint() }
        if flags & Flag.key != 0 { _ = try r.lengthPrefixed() }
        if flags & Flag.stream != 0 { _ = try r.lengthPrefixed() }
        var size = UInt64(r.offset) + 4
        for present in [flags & Flag.message != 0, flags & Flag.payload != 0] where present {
            let length = try droppedLength(&r, 0)
            _ = try r.be32()
            var w = ByteWriter(capacity: 10)
            w.putVarint(length)
            size += UInt64(w.bytes.count) + length
        }
        return size
    }

    /// The most a dropped message or payload can have been: no record is larger than this, and
    /// the bound keeps the size arithmetic of a hostile record from overflowing.
    static let droppedBytesMax: UInt64 = 1 << 40

    private static func droppedLength(_ r: inout ByteReader, _ id: EventID) throws(StorageError) -> UInt64 {
        let length = try r.varint()
        guard length <= droppedBytesMax else { throw StorageError(.corruption, "record \(id): a dropped length of \(length) bytes") }
        return length
    }

    /// Whether a record's own checksum matches (either form); decoding checks the rest.
    static func checksumMatches(id: EventID, _ record: ArraySlice<UInt8>) -> Bool {
        guard let end = ownChecksumStart(record) else { return false }
        return checksum(id: id, record[record.startIndex..<end]) == UInt32(bigEndianBytes: record[end..<(end + 4)])
    }

    /// Where a record's own checksum starts: its last 4 bytes, or for a compacted record the 4
    /// before the original's. Nil when the record is too short to hold one.
    private static func ownChecksumStart(_ record: ArraySlice<UInt8>) -> Int? {
        guard record.count >= 6 else { return nil }
        let tail = isCompacted(record) ? 8 : 4
        guard record.count >= 2 + tail else { return nil }
        return record.endIndex - tail
    }

    /// The epoch and key of an encoded record, read in place without decoding the rest (nil if
    /// it is malformed): a leader reads them for every record it ships.
    static func epochAndKey(of record: UnsafeRawBufferPointer) -> (epoch: UInt64, key: String?)? {
        guard record.count > 6 else { return nil }
        let body = UnsafeRawBufferPointer(rebasing: record[..<(record.count - 4)])
        var i = 2  // version, flags
        func varint() -> UInt64? { Varint.read(body, at: &i) }
        func skip(_ count: UInt64) -> Bool {
            guard count <= UInt64(body.count - i) else { return false }
            i += Int(count)
            return true
        }
        guard let epoch = varint(), varint() != nil, let typeLength = varint(), skip(typeLength), let parents = varint() else { return nil }
        // A count larger than the record ends at its end: each parent takes a byte at least.
        for _ in 0..<parents {
            guard varint() != nil else { return nil }
        }
        guard body[1] & Flag.key != 0 else { return (epoch, nil) }
        guard let keyLength = varint(), keyLength <= UInt64(body.count - i),
            let key = ByteReader.validString(UnsafeRawBufferPointer(rebasing: body[i..<(i + Int(keyLength))]))
        else { return nil }
        return (epoch, key)
    }

    /// The time of an encoded record, read without decoding the rest (nil if it is too short).
    static func timeUnixNano(of record: ArraySlice<UInt8>) -> Int64? {
        var i = record.startIndex + 2  // version, flags
        func varint() -> UInt64? { Varint.read(record, at: &i) }
        guard i <= record.endIndex, varint() != nil, let zigzag = varint() else { return nil }
        return Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1)
    }

    static func checksum(id: EventID, _ body: ArraySlice<UInt8>) -> UInt32 {
        withUnsafeBytes(of: id.bigEndian) { CRC32C.update(CRC32C.update(0, $0), body) }
    }

    static func putParents(_ w: inout ByteWriter, id: EventID, _ parents: [EventID]) {
        w.putVarint(UInt64(parents.count))
        for parent in parents {
            precondition(parent >= 1 && parent < id, "parent \(parent) of \(id) breaks the topological order")
            w.putVarint(id - parent)
        }
    }

    static func readParents(_ r: inout ByteReader, id: EventID) throws(StorageError) -> [EventID] {
        var parents: [EventID] = []
        try checkParents(&r, id: id, reserve: { parents.reserveCapacity($0) }, each: { parents.append($0) })
        return parents
    }

    /// Checks the parent list at `r`, moves past it and returns how many parents it holds:
    /// `parse` keeps only where the list is; `StoredRecord.parentIDs` reads the checked ids.
    @inline(__always)
    @discardableResult
    static func checkParents(
        _ r: inout ByteReader, id: EventID, reserve: (Int) -> Void = { _ in }, each: (EventID) -> Void = { _ in }
    ) throws(StorageError) -> Int {
        let count = try r.varint()
        guard count <= UInt64(r.end) else { throw StorageError(.corruption, "record \(id): parent count \(count) exceeds record") }
        reserve(Int(count))
        for _ in 0..<count {
            let delta = try r.varint()
            guard delta >= 1, delta < id else { throw StorageError(.corruption, "record \(id): parent delta \(delta) out of range") }
            each(id - delta)
        }
        return Int(count)
    }
}
