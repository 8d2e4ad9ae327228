/// The one error type of LineageQuery: what is wrong, where (a UTF-8 byte range of the query),
/// and optionally how to fix it. Line and column are computed only when the error is rendered.
public struct QueryError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        public static let syntax = Code(name: "syntax")
        public static let analysis = Code(name: "analysis")
        public static let limit = Code(name: "limit")
        public var description: String { name }
    }

    public var code: Code
    public var message: String
    /// UTF-8 byte offsets into the query text.
    public var range: Range<Int>
    public var suggestion: String?

    public init(_ code: Code, _ message: String, range: Range<Int>, suggestion: String? = nil) {
        self.code = code
        self.message = message
        self.range = range
        self.suggestion = suggestion
    }

    public var description: String { message }

    /// 1-based line and 1-based column (counted in UTF-8 bytes within the line, as swift-syntax does).
    public func location(in source: String) -> (line: Int, column: Int) {
        var line = 1
        var lineStart = 0
        for (offset, byte) in source.utf8.enumerated() {
            if offset >= range.lowerBound { break }
            if byte == UInt8(ascii: "\n") {
                line += 1
                lineStart = offset + 1
            }
        }
        return (line, range.lowerBound - lineStart + 1)
    }

    /// `line L, column C: message`, the offending line, a caret under the problem, and the suggestion.
    public func rendered(in source: String) -> String {
        let (line, column) = location(in: source)
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
        let text = line <= lines.count ? String(lines[line - 1]) : ""
        // Pad by characters, not bytes, so the caret sits under the right place on non-ASCII lines.
        let bytes = Array(text.utf8)
        let start = min(max(0, column - 1), bytes.count)
        let end = min(bytes.count, start + max(1, range.count))
        let pad = String(decoding: bytes[..<start], as: UTF8.self).count
        let width = max(1, String(decoding: bytes[start..<end], as: UTF8.self).count)
        var out = "line \(line), column \(column): \(message)\n  \(text)\n  "
        out += String(repeating: " ", count: pad) + String(repeating: "^", count: width)
        if let suggestion { out += "\n  hint: \(suggestion)" }
        return out
    }
}
