/// "Did you mean": the closest candidate by edit distance, if it is close enough to be a typo.
/// Shared by every error that names a wrong word: query fields and functions, workflow fields,
/// task ids and inputs.
public enum Suggest {
    public static func nearest(_ word: String, in candidates: [String]) -> String? {
        let target = Array(word.lowercased().utf8.prefix(64))
        var best: (String, Int)?
        for candidate in candidates {
            let d = distance(target, Array(candidate.utf8))
            if d <= max(1, candidate.utf8.count / 3), d < best?.1 ?? .max { best = (candidate, d) }
        }
        return best?.0
    }

    /// Optimal string alignment distance: Levenshtein plus adjacent transpositions, the most
    /// common typo ("tpye"). Full matrix; inputs are short names (the word is cut at 64 bytes).
    public static func distance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
