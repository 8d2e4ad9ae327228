extension RandomAccessCollection where Index == Int {
    /// The first index whose element satisfies `isAfter`, which must be false for a prefix of
    /// the collection and true for the rest (a sorted array split at a value): a binary search.
    public func partitioningIndex(where isAfter: (Element) throws -> Bool) rethrows -> Int {
        var (low, high) = (startIndex, endIndex)
        while low < high {
            let middle = low + (high - low) / 2
            if try isAfter(self[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
