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
            text += "\n  \(sourceLine)\n  \(String(repeating: " ", count: max(0, column - 1)))^"
        }
        if let hint { text += "\n  hint: \(hint)" }
        return text
    }
}
