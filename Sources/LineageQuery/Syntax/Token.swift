/// A token: its kind and the UTF-8 byte range it covers in the query text. Tokens are spans of
/// the source (as in SQLite's tokenizer); the text is sliced out only when needed.
struct Token: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        case identifier, integer, decimal, string
        case leftParen, rightParen, comma, dot
        case equal, notEqual, less, lessEqual, greater, greaterEqual
        case end
    }

    var kind: Kind
    var range: Range<Int>
}

extension Token.Kind: CustomStringConvertible {
    var description: String {
        switch self {
        case .identifier: "a name"
        case .integer: "an integer"
        case .decimal: "a number"
        case .string: "a string"
        case .leftParen: "'('"
        case .rightParen: "')'"
        case .comma: "','"
        case .dot: "'.'"
        case .equal: "'='"
        case .notEqual: "'!='"
        case .less: "'<'"
        case .lessEqual: "'<='"
        case .greater: "'>'"
        case .greaterEqual: "'>='"
        case .end: "the end of the query"
        }
    }
}
