/// Why a definition was refused, and where: like the query language's errors, the line and
/// column, the source line with a caret under the spot, and a hint when there is one.
public struct DefinitionError: Error, Sendable, CustomStringConvertible {
    /// 1-based; 0 when the problem is the whole file.
    public var line: Int
    public var column: Int
    /// The field at fault, as a path: `tasks[2].retry.max_attempts`.
    public var field: String
    public var message: String
    public var hint: String?
    /// The source line, for the caret display.
    public var sourceLine: String?

    public init(line: Int, column: Int, field: String, message: String, hint: String? = nil, sourceLine: String? = nil) {
        self.line = line
        self.column = column
        self.field = field
        self.message = message
        self.hint = hint
        self.sourceLine = sourceLine
    }

    public var description: String {
        var text = line > 0 ? "\(line):\(column): " : ""
        text += field.isEmpty ? message : "\(field): \(message)"
        if let sourceLine, line > 0 {
            // A window of the line around the column (a definition may be one long line); tabs
            // kept in the padding so the caret lines up under them.
            let scalars = Array(sourceLine.unicodeScalars)
            let at = min(max(0, column - 1), scalars.count)
            let start = max(0, at - 60)
            let end = min(scalars.count, at + 60)
            let shown = String(String.UnicodeScalarView(scalars[start..<end]))
            let pad = String(String.UnicodeScalarView(scalars[start..<at].map { $0 == "\t" ? "\t" : " " }))
            text += "\n  \(start > 0 ? "..." : "")\(shown)\(end < scalars.count ? "..." : "")\n  \(start > 0 ? "   " : "")\(pad)^"
        }
        if let hint { text += "\n  hint: \(hint)" }
        return text
    }
}
