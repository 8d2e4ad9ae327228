/// CRC-32C (Castagnoli), the checksum of log records and segments. Slice-by-8 table lookup:
/// records are small and checked on every read, so this must cost little next to a RocksDB get.
enum CRC32C {
    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for i in 0..<256 {
            var crc = UInt32(i)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[0][i] = crc
        }
        for i in 0..<256 {
            for t in 1..<8 {
                let prev = tables[t - 1][i]
                tables[t][i] = (prev >> 8) ^ tables[0][Int(prev & 0xff)]
            }
        }
        return tables
    }()

    /// Extends `crc` (0 to start) with `bytes`.
    static func update(_ crc: UInt32, _ bytes: some Collection<UInt8>) -> UInt32 {
        let t = tables
        var c = ~crc
        var iterator = bytes.makeIterator()
        var remaining = bytes.count
        while remaining >= 8 {
            var word: UInt64 = 0
            for i in 0..<8 { word |= UInt64(iterator.next()!) << (8 * UInt64(i)) }
            let lo = UInt32(truncatingIfNeeded: word) ^ c
            let hi = UInt32(truncatingIfNeeded: word >> 32)
            c = t[7][Int(lo & 0xff)] ^ t[6][Int((lo >> 8) & 0xff)] ^ t[5][Int((lo >> 16) & 0xff)] ^ t[4][Int(lo >> 24)]
                ^ t[3][Int(hi & 0xff)] ^ t[2][Int((hi >> 8) & 0xff)] ^ t[1][Int((hi >> 16) & 0xff)] ^ t[0][Int(hi >> 24)]
            remaining -= 8
        }
        while let b = iterator.next() {
            c = t[0][Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8)
        }
        return ~c
    }

    static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        update(0, bytes)
    }
}
