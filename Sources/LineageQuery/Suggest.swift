/// "Did you mean": the closest candidate by edit distance, if it is close enough to be a typo.
enum Suggest {
    static func nearest(_ word: String, in candidates: [String]) -> String? {
        let target = Array(word.lowercased().utf8.prefix(64))
        var best: (String, Int)?
        for candidate in candidates {
            let d = distance(target, Array(candidate.utf8))
            if d <= max(1, candidate.utf8.count / 3), best == nil || d < best!.1 { best = (candidate, d) }
        }
        return best?.0
    }

    /// Levenshtein distance (two rows; inputs are short names).
    static func distance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var row = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            row[0] = i
            for j in 1...b.count {
                row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &row)
        }
        return previous[b.count]
    }
}
