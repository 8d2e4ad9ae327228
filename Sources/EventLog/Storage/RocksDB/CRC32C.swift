import CRocksDB

/// CRC-32C (Castagnoli), the checksum of records, index blocks and segments.
///
/// Computed in C (Sources/CRocksDB/shim.h): the crc32 instruction on x86-64 CPUs that have it,
/// RocksDB's own implementation elsewhere. The writer checksums every record it stages; the
/// table-driven Swift version this replaced took 8% of the writer thread.
public enum CRC32C {
    /// Extends `crc` (0 to start) with `bytes`.
    public static func update(_ crc: UInt32, _ bytes: some Collection<UInt8>) -> UInt32 {
        if let result = bytes.withContiguousStorageIfAvailable({ update(crc, UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { update(crc, $0) }
    }

    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        return banyan_crc32c_extend(crc, base.assumingMemoryBound(to: CChar.self), bytes.count)
    }

    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        update(0, bytes)
    }

    /// The CRC-32C of `A ++ B` from `crcA`, `crcB` and the length of B, without B's bytes
    /// (zlib's crc32_combine with the Castagnoli polynomial): a compacted record proves its
    /// original checksum from the checksums of what it dropped. Appending `n` zero bytes to a CRC
    /// register is linear over GF(2); `zeroOperators[k]` is the matrix for 2^k zero bytes.
    public static func combine(_ crcA: UInt32, _ crcB: UInt32, lengthB: UInt64) -> UInt32 {
        var crc = crcA
        var length = lengthB
        var k = 0
        while length != 0 {
            if length & 1 != 0 { crc = times(zeroOperators[k], crc) }
            length >>= 1
            k += 1
        }
        return crc ^ crcB
    }

    private static let zeroOperators: [[UInt32]] = {
        // The operator for one zero bit, then squared: 2, 4, 8 bits = one byte, then 2^k bytes.
        var op = [UInt32](repeating: 0, count: 32)
        op[0] = 0x82F6_3B78
        for n in 1..<32 { op[n] = 1 << UInt32(n - 1) }
        for _ in 0..<3 { op = square(op) }
        var operators: [[UInt32]] = []
        for _ in 0..<64 {
            operators.append(op)
            op = square(op)
        }
        return operators
    }()

    private static func times(_ matrix: [UInt32], _ vector: UInt32) -> UInt32 {
        var sum: UInt32 = 0
        var v = vector
        var i = 0
        while v != 0 {
            if v & 1 != 0 { sum ^= matrix[i] }
            v >>= 1
            i += 1
        }
        return sum
    }

    private static func square(_ matrix: [UInt32]) -> [UInt32] {
        (0..<32).map { times(matrix, matrix[$0]) }
    }
}
