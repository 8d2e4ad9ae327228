/// A visited set over a dense id range `[lower, upper]`: one bit per id. Because ids are a
/// topological order, ancestors of x live in `[1, x]` and descendants in `[x, last]`, so a
/// traversal knows its range up front and pays `range / 8` bytes instead of a hash set.
public struct IDBitset: Sendable {
    public let lower: EventID
    public let upper: EventID
    private var words: [UInt64]

    public init(lower: EventID, upper: EventID) {
        precondition(lower <= upper, "empty bitset range \(lower)...\(upper)")
        self.lower = lower
        self.upper = upper
        words = [UInt64](repeating: 0, count: Int((upper - lower) / 64 + 1))
    }

    public func contains(_ id: EventID) -> Bool {
        guard id >= lower, id <= upper else { return false }
        let offset = id - lower
        return words[Int(offset >> 6)] & (1 << (offset & 63)) != 0
    }

    /// Inserts `id`; returns false if it was already present.
    @discardableResult
    public mutating func insert(_ id: EventID) -> Bool {
        precondition(id >= lower && id <= upper, "id \(id) outside bitset range \(lower)...\(upper)")
        let offset = id - lower
        let index = Int(offset >> 6)
        let bit: UInt64 = 1 << (offset & 63)
        if words[index] & bit != 0 { return false }
        words[index] |= bit
        return true
    }
}
