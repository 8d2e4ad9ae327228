#if canImport(Glibc)
import Glibc
#endif
/// Little helpers for the binary formats: big-endian fixed integers (so keys sort numerically)
/// and LEB128 varints (compact values). All decoding is bounds-checked and throws on short input.
public struct ByteWriter {
    public var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func putBE64(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }

    public mutating func putBE32(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    public mutating func putVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func putZigzag(_ v: Int64) {
        putVarint(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    public mutating func putBytes(_ b: some Collection<UInt8>) {
        putVarint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    public mutating func putString(_ s: String) {
        putBytes(s.utf8)
    }
}

public struct ByteReader {
    public let bytes: [UInt8]
    public var offset: Int
    /// Where reading stops: the end of `bytes` unless a reader of a prefix said otherwise (a
    /// record without its trailing checksum, read in place instead of copied).
    public let end: Int

    public init(_ bytes: [UInt8], offset: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.offset = offset
        self.end = min(end ?? bytes.count, bytes.count)
    }

    public var isAtEnd: Bool { offset >= end }

    public mutating func byte() throws(StorageError) -> UInt8 {
        guard offset < end else { throw Self.short(offset) }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func be64() throws(StorageError) -> UInt64 {
        guard offset + 8 <= end else { throw Self.short(offset) }
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(bytes[offset + i]) }
        offset += 8
        return v
    }

    public mutating func be32() throws(StorageError) -> UInt32 {
        guard offset + 4 <= end else { throw Self.short(offset) }
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(bytes[offset + i]) }
        offset += 4
        return v
    }

    public mutating func varint() throws(StorageError) -> UInt64 {
        var at = offset
        guard let value = Varint.read(bytes[..<end], at: &at) else {
            throw at >= end ? Self.short(at) : StorageError(.corruption, "varint longer than 10 bytes at offset \(at)")
        }
        offset = at
        return value
    }

    public mutating func zigzag() throws(StorageError) -> Int64 {
        let v = try varint()
        return Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1)
    }

    public mutating func bytes(count: Int) throws(StorageError) -> ArraySlice<UInt8> {
        guard count >= 0, offset + count <= end else { throw Self.short(offset) }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    public mutating func lengthPrefixed() throws(StorageError) -> ArraySlice<UInt8> {
        let count = try varint()
        guard count <= UInt64(end) else { throw Self.short(offset) }
        return try bytes(count: Int(count))
    }

    public mutating func string() throws(StorageError) -> String {
        let raw = try lengthPrefixed()
        guard let s = raw.withUnsafeBytes(Self.validString) else {
            throw StorageError(.corruption, "invalid UTF-8 in stored string at offset \(offset)")
        }
        return s
    }

    /// `stored` as a String, nil unless it is valid UTF-8. String(validating:) is generic and
    /// looked up type metadata on every call (16% of reading a query page); decoding from a
    /// buffer takes the specialised path, and a decode that repaired anything differs from the
    /// stored bytes.
    static func validString(_ stored: UnsafeRawBufferPointer) -> String? {
        var s = String(decoding: stored, as: UTF8.self)
        let same = s.withUTF8 { decoded in
            guard decoded.count == stored.count, let a = decoded.baseAddress, let b = stored.baseAddress else { return decoded.count == stored.count }
            return memcmp(a, b, stored.count) == 0
        }
        return same ? s : nil
    }

    private static func short(_ offset: Int) -> StorageError {
        StorageError(.corruption, "record truncated at offset \(offset)")
    }
}

/// LEB128 varints, read in place: the one decoder behind `ByteReader.varint` and the readers
/// that scan bytes without copying them (record headers, WAL batches).
enum Varint {
    /// The varint at `at` in `bytes`, moving `at` past it; nil when it runs past the end or past
    /// 10 bytes (then `at` is where it stopped).
    static func read<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes, at: inout Int) -> UInt64? where Bytes.Index == Int {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while at < bytes.endIndex, shift < 64 {
            let byte = bytes[at]
            at += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
        return nil
    }
}

extension Array where Element == UInt8 {
    /// Decodes 8 big-endian bytes starting at `start` (callers have checked the length).
    func be64(at start: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(self[start + i]) }
        return v
    }
}
