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
}
