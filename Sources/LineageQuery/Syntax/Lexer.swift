import EventLog
/// Splits query text into tokens over its UTF-8 bytes. Whitespace and `--` comments (to the end
/// of the line) separate tokens. Strings are double-quoted with `\"`, `\\`, `\n`, `\t` escapes.
/// Names are ASCII letters, digits and `_`; `.` separates payload paths, so values such as
/// `"task.failed"` are written as strings.
struct Lexer {
    let source: [UInt8]
    private(set) var position = 0
    /// Bounds the token count so a hostile query cannot make the parser allocate without end.
    static let tokensMax = Limits().queryTokensMax

    init(_ text: String) {
        source = Array(text.utf8)
    }

    /// All tokens, ending with `.end`.
    static func tokenize(_ text: String) throws(QueryError) -> [Token] {
        var lexer = Lexer(text)
        var tokens: [Token] = []
        while true {
            let token = try lexer.next()
            tokens.append(token)
            if token.kind == .end { return tokens }
            if tokens.count > tokensMax {
                throw QueryError(.limit, "the query is longer than \(tokensMax) tokens", range: token.range)
            }
        }
    }

    mutating func next() throws(QueryError) -> Token {
        skipTrivia()
        let start = position
        guard position < source.count else { return Token(kind: .end, range: start..<start) }
        let byte = source[position]
        position += 1
        func single(_ kind: Token.Kind) -> Token { Token(kind: kind, range: start..<position) }
        switch byte {
        case UInt8(ascii: "("): return single(.leftParen)
        case UInt8(ascii: ")"): return single(.rightParen)
        case UInt8(ascii: ","): return single(.comma)
        case UInt8(ascii: "."): return single(.dot)
        case UInt8(ascii: "="): return single(.equal)
        case UInt8(ascii: "!"):
            guard take(UInt8(ascii: "=")) else {
                throw QueryError(.syntax, "'!' must be followed by '=' (not equal)", range: start..<position, suggestion: "use != or not")
            }
            return single(.notEqual)
        case UInt8(ascii: "<"): return single(take(UInt8(ascii: "=")) ? .lessEqual : (take(UInt8(ascii: ">")) ? .notEqual : .less))
        case UInt8(ascii: ">"): return single(take(UInt8(ascii: "=")) ? .greaterEqual : .greater)
        case UInt8(ascii: "\""): return try string(from: start)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number(from: start)
        default:
            if Self.isNameStart(byte) {
                while position < source.count, Self.isNameByte(source[position]) { position += 1 }
                return single(.identifier)
            }
            let end = Self.scalarEnd(source, start)
            position = end
            let text = String(decoding: source[start..<end], as: UTF8.self)
            throw QueryError(.syntax, "unexpected character '\(text)'", range: start..<end)
        }
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard position < source.count, source[position] == byte else { return false }
        position += 1
        return true
    }

    private mutating func skipTrivia() {
        while position < source.count {
            let byte = source[position]
            if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
                position += 1
            } else if byte == UInt8(ascii: "-"), position + 1 < source.count, source[position + 1] == UInt8(ascii: "-") {
                while position < source.count, source[position] != 0x0A { position += 1 }
            } else {
                return
            }
        }
    }

    private mutating func string(from start: Int) throws(QueryError) -> Token {
        while position < source.count {
            let byte = source[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                return Token(kind: .string, range: start..<position)
            }
            if byte == 0x0A { break }
            if byte == UInt8(ascii: "\\") {
                guard position + 1 < source.count, "\"\\nt".utf8.contains(source[position + 1]) else {
                    throw QueryError(.syntax, "unknown escape in string (use \\\" \\\\ \\n \\t)", range: position..<min(position + 2, source.count))
                }
                position += 2
                continue
            }
            position += 1
        }
        throw QueryError(.syntax, "unterminated string", range: start..<position, suggestion: "close it with \"")
    }

    private mutating func number(from start: Int) throws(QueryError) -> Token {
        var kind = Token.Kind.integer
        var digits = Self.isDigit(source[start]) ? 1 : 0
        while position < source.count, Self.isDigit(source[position]) {
            position += 1
            digits += 1
        }
        if position < source.count, source[position] == UInt8(ascii: "."), position + 1 < source.count, Self.isDigit(source[position + 1]) {
            kind = .decimal
            position += 1
            while position < source.count, Self.isDigit(source[position]) { position += 1 }
        }
        guard digits > 0 || kind == .decimal else {
            throw QueryError(.syntax, "'-' must start a number", range: start..<position)
        }
        if position < source.count, Self.isNameStart(source[position]) {
            throw QueryError(.syntax, "a number runs into a name", range: start..<position + 1, suggestion: "separate them with a space")
        }
        return Token(kind: kind, range: start..<position)
    }

    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
    static func isNameStart(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A || b == UInt8(ascii: "_") }
    static func isNameByte(_ b: UInt8) -> Bool { isNameStart(b) || isDigit(b) }

    /// End of the UTF-8 scalar starting at `start` (so errors never split a character).
    static func scalarEnd(_ bytes: [UInt8], _ start: Int) -> Int {
        var end = start + 1
        while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
        return end
    }
}
