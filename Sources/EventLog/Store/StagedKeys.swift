/// The keys of one commit group's events, so a duplicate or a `parent_keys` entry finds an event
/// staged in the group, or in a group handed on but not yet written, that storage does not know.
///
/// An open-addressing table (linear probing) of positions in the group's `keys`, with each key's
/// `KeyFilter.hash`, which the stager computes once per staged key for the filter too. It is
/// sized once for the keys the group's batches carry, so an insert is a probe or two and no
/// rehash; a Swift `Dictionary` keyed by the key's bytes spent as long per insert as encoding the
/// whole record. The hash is seeded per process (`KeyFilter.hash`), which makes choosing keys
/// that collide impractical, and a table holds at most one commit group (`commitGroupEventsMax`),
/// which bounds what collisions could cost.
///
/// Entries are removed only newest first (a rolled-back batch), which linear probing allows by
/// clearing the slot, as long as every entry sits where inserting in position order put it: no
/// later entry probed past it. A resize therefore inserts again in position order.
struct StagedKeys {
    /// 0 when empty, else the key's position in the group's `keys` plus 1.
    private var slots: [UInt32] = []
    private var hashes: [UInt64] = []
    private var mask = 0
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// `keys[position]` (the group's keys, `position == count`) is new to the table; `expected`:
    /// how many keys the group may get, to size the table on its first insert.
    mutating func insert(position: Int, hash: UInt64, expected: Int) {
        if slots.isEmpty {
            resize(capacity: Self.capacity(for: max(expected, count + 1)))
        } else if (count + 1) * 2 > slots.count {
            resize(capacity: slots.count * 2)
        }
        place(UInt32(position + 1), hash)
        count += 1
    }

    /// The id of `key` if the table holds it.
    func find(_ key: String, hash: UInt64, in keys: [(key: String, id: EventID)]) -> EventID? {
        guard count > 0 else { return nil }
        var i = Self.start(hash, mask)
        while slots[i] != 0 {
            if hashes[i] == hash {
                let entry = keys[Int(slots[i] - 1)]
                if KeyBytes(entry.key) == KeyBytes(key) { return entry.id }
            }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Removes the newest entry, `keys[position]` with `hash`.
    mutating func removeNewest(position: Int, hash: UInt64) {
        var i = Self.start(hash, mask)
        while slots[i] != 0 {
            if slots[i] == UInt32(position + 1) {
                slots[i] = 0
                count -= 1
                return
            }
            i = (i + 1) & mask
        }
        preconditionFailure("StagedKeys: removed a key it does not hold")
    }

    private mutating func place(_ slot: UInt32, _ hash: UInt64) {
        var i = Self.start(hash, mask)
        while slots[i] != 0 { i = (i + 1) & mask }
        slots[i] = slot
        hashes[i] = hash
    }

    private mutating func resize(capacity: Int) {
        // The live positions are 0..<count: keys are added and removed newest first.
        var byPosition = [UInt64](repeating: 0, count: count)
        for (slot, hash) in zip(slots, hashes) where slot != 0 { byPosition[Int(slot - 1)] = hash }
        slots = Array(repeating: 0, count: capacity)
        hashes = Array(repeating: 0, count: capacity)
        mask = capacity - 1
        for (position, hash) in byPosition.enumerated() { place(UInt32(position + 1), hash) }
    }

    /// A power of two at least twice `keys`: probes stay short at half full.
    private static func capacity(for keys: Int) -> Int {
        var capacity = 64
        while capacity < keys * 2 { capacity <<= 1 }
        return capacity
    }

    /// The high bits: `KeyFilter` picks its block with the low ones.
    private static func start(_ hash: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: hash >> 32) & mask
    }
}
