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
enum RecordCodec {
    static let version: UInt8 = 1

    private enum Flag {
        static let key: UInt8 = 1
        static let stream: UInt8 = 2
        static let message: UInt8 = 4
        static let payload: UInt8 = 8
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
        guard bytes.count >= 6 else { throw StorageError(.corruption, "record \(id): \(bytes.count) bytes is too short") }
        let body = bytes[0..<(bytes.count - 4)]
        let stored = ByteReaderTail.be32(bytes)
        let computed = checksum(id: id, body)
        guard stored == computed else {
            throw StorageError(.corruption, "record \(id): checksum mismatch (stored \(stored), computed \(computed))")
        }
        var r = ByteReader(Array(body))
        let version = try r.byte()
        guard version == Self.version else {
            throw StorageError(.corruption, "record \(id): unknown record format version \(version)")
        }
        let flags = try r.byte()
        let epoch = try r.varint()
        let time = try r.zigzag()
        let type = try r.string()
        let parents = try readParents(&r, id: id)
        let key = flags & Flag.key != 0 ? try r.string() : nil
        let stream = flags & Flag.stream != 0 ? try r.string() : nil
        let message = flags & Flag.message != 0 ? try r.string() : nil
        let payload = flags & Flag.payload != 0 ? Array(try r.lengthPrefixed()) : nil
        guard r.isAtEnd else { throw StorageError(.corruption, "record \(id): \(r.bytes.count - r.offset) trailing bytes") }
        return Event(
            id: id, epoch: epoch, timeUnixNano: time, type: type, parents: parents,
            key: key, stream: stream, message: message, payload: payload)
    }

    /// The epoch and key of an encoded record, read without decoding the rest (nil if it is
    /// malformed).
    static func epochAndKey(of record: ArraySlice<UInt8>) -> (epoch: UInt64, key: String?)? {
        guard record.count > 6 else { return nil }
        var r = ByteReader(Array(record.dropLast(4)))
        do {
            _ = try r.byte()
            let flags = try r.byte()
            let epoch = try r.varint()
            _ = try r.varint()
            _ = try r.lengthPrefixed()
            let parents = try r.varint()
            for _ in 0..<parents { _ = try r.varint() }
            return (epoch, flags & Flag.key != 0 ? try r.string() : nil)
        } catch {
            return nil
        }
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
        let count = try r.varint()
        guard count <= UInt64(r.bytes.count) else { throw StorageError(.corruption, "record \(id): parent count \(count) exceeds record") }
        var parents: [EventID] = []
        parents.reserveCapacity(Int(count))
        for _ in 0..<count {
            let delta = try r.varint()
            guard delta >= 1, delta < id else { throw StorageError(.corruption, "record \(id): parent delta \(delta) out of range") }
            parents.append(id - delta)
        }
        return parents
    }
}

private enum ByteReaderTail {
    static func be32(_ bytes: [UInt8]) -> UInt32 {
        let n = bytes.count
        return UInt32(bytes[n - 4]) << 24 | UInt32(bytes[n - 3]) << 16 | UInt32(bytes[n - 2]) << 8 | UInt32(bytes[n - 1])
    }
}
