/// The writer's first stop for a type or stream name's dictionary id: direct-mapped by an FNV-1a
/// hash of the name's UTF-8, so a hit costs one short hash and one comparison. Swift's
/// `Dictionary<String, UInt32>` (a seeded SipHash, probing, then comparing) took 13% of the writer
/// thread for the two lookups per event. A collision evicts; the writer's dictionaries behind it
/// still know the name.
///
/// Not thread-safe: the writer thread's alone.
struct NameCache {
    static let slots = 4_096
    /// "" marks an empty slot: a type or stream name is never empty.
    private var names = [String](repeating: "", count: slots)
    private var ids = [UInt32](repeating: 0, count: slots)

    func id(_ name: String) -> UInt32? {
        let slot = Self.slot(name)
        return names[slot] == name ? ids[slot] : nil
    }

    mutating func set(_ name: String, _ id: UInt32) {
        let slot = Self.slot(name)
        names[slot] = name
        ids[slot] = id
    }

    private static func slot(_ name: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return Int(truncatingIfNeeded: hash ^ (hash >> 32)) & (slots - 1)
    }
}
