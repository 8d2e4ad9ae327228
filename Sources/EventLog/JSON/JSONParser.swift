/// Strict RFC 8259 JSON parser.
///
/// Rejects everything the RFC does not allow (trailing commas, comments, NaN/Infinity, leading zeros or '+',
/// raw control characters in strings, invalid UTF-8) plus duplicate object keys, because ambiguous input
/// in an event log is a bug waiting to happen. A `\u` escape of a lone UTF-16 surrogate is refused too:
/// the text would not be Unicode, and decoding it to U+FFFD (as Go does) would make distinct keys equal.
///
/// Iterative with an explicit stack, so hostile nesting fails with a depth error instead of overflowing the
/// thread stack. Stateless; safe to call from any thread.
public enum JSONParser {
    public static let defaultDepthMax = 512

    /// Parses exactly one JSON value (leading/trailing whitespace allowed; anything else after it is an error).
    public static func parse(_ bytes: [UInt8], depthMax: Int = defaultDepthMax) throws(JSONError) -> JSONValue {
        let result = bytes.withUnsafeBufferPointer { run($0, depthMax: depthMax) }
        return try result.get()
    }

    /// Parses the UTF-8 form of `text`; same rules as the byte-array overload.
    public static func parse(_ text: String, depthMax: Int = defaultDepthMax) throws(JSONError) -> JSONValue {
        var text = text
        let result = text.withUTF8 { run($0, depthMax: depthMax) }
        return try result.get()
    }

    // Result rather than a throwing closure: the buffer-access APIs are not all typed-throws aware.
    private static func run(_ buffer: UnsafeBufferPointer<UInt8>, depthMax: Int) -> Result<JSONValue, JSONError> {
        var reader = JSONReader(input: buffer, depthMax: depthMax)
        do {
            return .success(try reader.parseDocument())
        } catch {
            return .failure(error)
        }
    }
}

enum JSONByte {
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let nine = UInt8(ascii: "9")
}

/// An array or object still being filled while the parser walks into its children.
private struct JSONParseFrame {
    var isObject: Bool
    var elements: [JSONValue] = []
    var members: [JSONMember] = []
    /// Key of the member whose value is being parsed.
    var key = ""
    /// Built only once an object gets large, since a linear scan beats hashing for the usual handful of keys.
    var keyIndex: Set<String>? = nil

    init(isObject: Bool) { self.isObject = isObject }

    /// Returns false if `key` is already used in this object.
    mutating func claim(_ key: String) -> Bool {
        if keyIndex != nil { return keyIndex?.insert(key).inserted ?? false }
        if members.count < 16 {
            for member in members where member.key == key { return false }
            return true
        }
        var index = Set<String>(minimumCapacity: members.count * 2)
        for member in members { index.insert(member.key) }
        let inserted = index.insert(key).inserted
        keyIndex = index
        return inserted
    }
}

struct JSONReader {
    let input: UnsafeBufferPointer<UInt8>
    let depthMax: Int
    var i = 0
    /// Reused across strings so escaped strings cost one allocation per document, not per string.
    var scratch: [UInt8] = []
    /// `transcodeValue`'s open containers and per-level object keys, reused across values.
    var openContainers: [Bool] = []
    var claimPool: [KeyClaims] = []

    init(input: UnsafeBufferPointer<UInt8>, depthMax: Int) {
        self.input = input
        self.depthMax = depthMax
    }

    /// Parses one document; an error inside a value of a top-level object names that member (`field`).
    mutating func parseDocument() throws(JSONError) -> JSONValue {
        var stack: [JSONParseFrame] = []
        // True while a key of the top-level object is read: an error there names no member.
        var readingKey = false
        do {
            return try parseDocument(&stack, &readingKey)
        } catch {
            var error = error
            if error.field == nil, !readingKey, let top = stack.first, top.isObject { error.field = top.key }
            throw error
        }
    }

    private mutating func parseDocument(_ stack: inout [JSONParseFrame], _ readingKey: inout Bool) throws(JSONError) -> JSONValue {
        let n = input.count
        var value: JSONValue
        skipWhitespace()
        parseValue: while true {
            guard i < n else { throw JSONError(offset: i, reason: "unexpected end of input, expected a value") }
            let c = input[i]
            switch c {
            case JSONByte.openBracket:
                try checkDepth(stack.count + 1)
                i += 1
                skipWhitespace()
                if i < n && input[i] == JSONByte.closeBracket {
                    i += 1
                    value = .array([])
                } else {
                    stack.append(JSONParseFrame(isObject: false))
                    continue parseValue
                }
            case JSONByte.openBrace:
                try checkDepth(stack.count + 1)
                i += 1
                skipWhitespace()
                if i < n && input[i] == JSONByte.closeBrace {
                    i += 1
                    value = .object([])
                } else {
                    var frame = JSONParseFrame(isObject: true)
                    readingKey = stack.isEmpty
                    frame.key = try parseKey()
                    readingKey = false
                    stack.append(frame)
                    continue parseValue
                }
            case JSONByte.quote:
                value = .string(try parseString())
            case UInt8(ascii: "t"):
                try expectLiteral("true")
                value = .bool(true)
            case UInt8(ascii: "f"):
                try expectLiteral("false")
                value = .bool(false)
            case UInt8(ascii: "n"):
                try expectLiteral("null")
                value = .null
            case JSONByte.minus, JSONByte.zero...JSONByte.nine:
                value = try parseNumber()
            default:
                throw unexpected(c, at: i)
            }

            // Hand the finished value to its parent; closing brackets finish parents in turn.
            while true {
                skipWhitespace()
                let top = stack.count - 1
                if top < 0 {
                    guard i == n else {
                        throw JSONError(offset: i, reason: "unexpected \(JSONError.describe(input[i])) after top-level value")
                    }
                    return value
                }
                let isObject = stack[top].isObject
                if isObject {
                    stack[top].members.append(JSONMember(key: stack[top].key, value: value))
                } else {
                    stack[top].elements.append(value)
                }
                if try separatorOrClose(isObject ? JSONByte.closeBrace : JSONByte.closeBracket) {
                    if isObject {
                        let keyStart = i
                        readingKey = top == 0
                        let key = try parseKey()
                        readingKey = false
                        guard stack[top].claim(key) else {
                            throw JSONError(offset: keyStart, reason: "duplicate key \(Self.quoteForMessage(key))")
                        }
                        stack[top].key = key
                    }
                    continue parseValue
                }
                let frame = stack.removeLast()
                value = isObject ? .object(frame.members) : .array(frame.elements)
            }
        }
    }

    /// After an array element or object member: consumes a ',' and returns true (another one
    /// follows; a trailing comma is an error), or consumes `close` and returns false.
    mutating func separatorOrClose(_ close: UInt8) throws(JSONError) -> Bool {
        let n = input.count
        skipWhitespace()
        guard i < n else {
            throw JSONError(offset: i, reason: "unexpected end of input, expected ',' or '\(Character(Unicode.Scalar(close)))'")
        }
        let c = input[i]
        if c == JSONByte.comma {
            let comma = i
            i += 1
            skipWhitespace()
            if i < n && input[i] == close { throw JSONError(offset: comma, reason: "trailing comma") }
            return true
        }
        guard c == close else {
            let expected = close == JSONByte.closeBrace ? "',' or '}'" : "',' or ']'"
            throw JSONError(offset: i, reason: "unexpected \(JSONError.describe(c)), expected \(expected)")
        }
        i += 1
        return false
    }

    func checkDepth(_ depth: Int) throws(JSONError) {
        if depth > depthMax {
            throw JSONError(offset: i, reason: "nesting deeper than \(depthMax)")
        }
    }

    /// Keys come from untrusted input; cap them so one hostile body cannot bloat logs and error responses.
    static func quoteForMessage(_ key: String) -> String {
        key.count > 64 ? String(reflecting: String(key.prefix(64))) + "…" : String(reflecting: key)
    }

    func unexpected(_ c: UInt8, at offset: Int) -> JSONError {
        JSONError(offset: offset, reason: "unexpected character \(JSONError.describe(c))")
    }

    mutating func skipWhitespace() {
        let n = input.count
        while i < n {
            switch input[i] {
            case 0x20, 0x0A, 0x0D, 0x09: i += 1
            default: return
            }
        }
    }

    /// Parses `"key"` and the following ':' (with surrounding whitespace), leaving `i` at the member value.
    mutating func parseKey() throws(JSONError) -> String {
        guard i < input.count else { throw JSONError(offset: i, reason: "unexpected end of input, expected object key") }
        guard input[i] == JSONByte.quote else {
            throw JSONError(offset: i, reason: "unexpected \(JSONError.describe(input[i])), expected '\"' to begin object key")
        }
        let key = try parseString()
        try expectColonAfterKey()
        return key
    }

    /// Skips the whitespace, the ':' and the whitespace that follow an object key.
    private mutating func expectColonAfterKey() throws(JSONError) {
        skipWhitespace()
        guard i < input.count else { throw JSONError(offset: i, reason: "unexpected end of input, expected ':'") }
        guard input[i] == JSONByte.colon else {
            throw JSONError(offset: i, reason: "unexpected \(JSONError.describe(input[i])), expected ':' after object key")
        }
        i += 1
        skipWhitespace()
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let start = i
        let matched = literal.withUTF8Buffer { word in
            guard input.count - start >= word.count else { return false }
            for k in 0..<word.count where input[start + k] != word[k] { return false }
            return true
        }
        guard matched else { throw JSONError(offset: start, reason: "invalid literal, expected '\(literal)'") }
        i += literal.utf8CodeUnitCount
    }

    mutating func parseNumber() throws(JSONError) -> JSONValue {
        let n = input.count
        let start = i
        if input[i] == JSONByte.minus { i += 1 }
        guard i < n, isDigit(input[i]) else { throw digitExpected("after '-'") }
        if input[i] == JSONByte.zero {
            i += 1
            if i < n && isDigit(input[i]) { throw JSONError(offset: i, reason: "leading zeros are not allowed") }
        } else {
            skipDigits()
        }
        if i < n && input[i] == JSONByte.dot {
            i += 1
            guard i < n, isDigit(input[i]) else { throw digitExpected("after decimal point") }
            skipDigits()
        }
        if i < n && (input[i] == UInt8(ascii: "e") || input[i] == UInt8(ascii: "E")) {
            i += 1
            if i < n && (input[i] == JSONByte.plus || input[i] == JSONByte.minus) { i += 1 }
            guard i < n, isDigit(input[i]) else { throw digitExpected("in exponent") }
            skipDigits()
        }
        return .number(String(decoding: UnsafeBufferPointer(rebasing: input[start..<i]), as: UTF8.self))
    }

    private func digitExpected(_ context: String) -> JSONError {
        if i < input.count {
            return JSONError(offset: i, reason: "unexpected \(JSONError.describe(input[i])), expected digit \(context)")
        }
        return JSONError(offset: i, reason: "unexpected end of input, expected digit \(context)")
    }

    @inline(__always) func isDigit(_ c: UInt8) -> Bool { c >= JSONByte.zero && c <= JSONByte.nine }

    private mutating func skipDigits() {
        while i < input.count && isDigit(input[i]) { i += 1 }
    }
}

// MARK: - Strings

extension JSONReader {
    /// Parses a string starting at the opening quote. Strings without escapes are decoded straight from the
    /// input; only escaped strings go through `scratch`.
    mutating func parseString() throws(JSONError) -> String {
        let n = input.count
        let open = i
        i += 1
        var runStart = i
        var escaped = false
        while i < n {
            let c = input[i]
            if c == JSONByte.quote {
                let run = UnsafeBufferPointer(rebasing: input[runStart..<i])
                i += 1
                if !escaped { return String(decoding: run, as: UTF8.self) }
                scratch.append(contentsOf: run)
                return String(decoding: scratch, as: UTF8.self)
            } else if c == JSONByte.backslash {
                if !escaped {
                    escaped = true
                    scratch.removeAll(keepingCapacity: true)
                }
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: input[runStart..<i]))
                try parseEscape(stringStart: open)
                runStart = i
            } else if c < 0x20 {
                throw JSONError(offset: i, reason: "unescaped control character \(JSONError.hex(c)) in string")
            } else if c < 0x80 {
                i += 1
            } else {
                try skipUTF8Sequence()
            }
        }
        throw JSONError(offset: open, reason: "unterminated string")
    }

    /// The index of the closing quote of the string whose opening quote is at `i`, when the string
    /// holds no escape and no control character (its UTF-8 validated on the way): such a string's
    /// bytes are already in `JSONWriter`'s form. Nil otherwise, or at an unterminated string; `i`
    /// is left where it was, for `parseString` to take the general path and report errors.
    private mutating func plainStringClose() throws(JSONError) -> Int? {
        let n = input.count
        let open = i
        defer { i = open }
        var k = open + 1
        while k < n {
            let c = input[k]
            if c == JSONByte.quote { return k }
            if c == JSONByte.backslash || c < 0x20 { return nil }
            if c < 0x80 {
                k += 1
            } else {
                i = k
                try skipUTF8Sequence()
                k = i
            }
        }
        return nil
    }

    /// Writes the string at `i` to `w` exactly as `w.writeString(try parseString())` would, copying
    /// a plain string's bytes (quotes included) without making a `String`.
    mutating func transcodeString(into w: inout JSONWriter) throws(JSONError) {
        if let close = try plainStringClose() {
            w.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: input[i...close]))
            i = close + 1
            return
        }
        w.writeString(try parseString())
    }

    /// Reads the object key at `i` and the colon after it, writing both as `transcodeValue` writes
    /// keys (`w.writeString(key)` then ':') and claiming the key in `claimPool[level]`; returns
    /// false, with the key written, if it was claimed already. A plain key is copied and compared
    /// as raw bytes, without making a `String`; anything else takes `parseKey`'s path.
    mutating func transcodeKey(into w: inout JSONWriter, level: Int) throws(JSONError) -> Bool {
        if i < input.count && input[i] == JSONByte.quote, let close = try plainStringClose() {
            let claimed = claimPool[level].claim(UnsafeBufferPointer(rebasing: input[(i + 1)..<close]))
            w.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: input[i...close]))
            i = close + 1
            try expectColonAfterKey()
            w.bytes.append(JSONByte.colon)
            return claimed
        }
        let key = try parseKey()
        let claimed = claimPool[level].claim(key)
        w.writeString(key)
        w.bytes.append(JSONByte.colon)
        return claimed
    }

    /// Decodes the escape at `i` (a backslash) into `scratch`.
    private mutating func parseEscape(stringStart: Int) throws(JSONError) {
        let n = input.count
        let escapeStart = i
        i += 1
        guard i < n else { throw JSONError(offset: stringStart, reason: "unterminated string") }
        let c = input[i]
        i += 1
        switch c {
        case JSONByte.quote, JSONByte.backslash, UInt8(ascii: "/"): scratch.append(c)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            guard let unit = hex4(at: i) else {
                throw JSONError(offset: escapeStart, reason: "invalid \\u escape, expected 4 hex digits")
            }
            i += 4
            var scalar = unit
            if unit >= 0xD800 && unit <= 0xDBFF {
                // A high surrogate counts only with a low one right after it.
                guard i + 1 < n, input[i] == JSONByte.backslash, input[i + 1] == UInt8(ascii: "u"),
                      let low = hex4(at: i + 2), low >= 0xDC00 && low <= 0xDFFF
                else { throw Self.loneSurrogate(unit, at: escapeStart) }
                scalar = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                i += 6
            } else if unit >= 0xDC00 && unit <= 0xDFFF {
                throw Self.loneSurrogate(unit, at: escapeStart)
            }
            appendUTF8(scalar)
        default:
            throw JSONError(offset: escapeStart, reason: "invalid escape '\\\(Character(Unicode.Scalar(c)))'")
        }
    }

    static func loneSurrogate(_ unit: UInt32, at offset: Int) -> JSONError {
        let hex = String(unit, radix: 16, uppercase: true)
        return JSONError(offset: offset, reason: "\\u\(hex) is a lone UTF-16 surrogate: JSON text must be valid Unicode (pair a high surrogate D800-DBFF with a low one DC00-DFFF)")
    }

    private func hex4(at offset: Int) -> UInt32? {
        guard offset + 4 <= input.count else { return nil }
        var value: UInt32 = 0
        for k in offset..<offset + 4 {
            let c = input[k]
            let digit: UInt8
            switch c {
            case JSONByte.zero...JSONByte.nine: digit = c &- JSONByte.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c &- UInt8(ascii: "a") &+ 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c &- UInt8(ascii: "A") &+ 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    private mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case ..<0x80:
            scratch.append(UInt8(scalar))
        case ..<0x800:
            scratch.append(UInt8(0xC0 | scalar >> 6))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        case ..<0x10000:
            scratch.append(UInt8(0xE0 | scalar >> 12))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | scalar >> 18))
            scratch.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// Validates one multi-byte UTF-8 sequence at `i` per Unicode Table 3-7 (no overlongs, no surrogates,
    /// nothing above U+10FFFF), so `String(decoding:)` never has to substitute replacement characters.
    private mutating func skipUTF8Sequence() throws(JSONError) {
        let n = input.count
        let lead = input[i]
        let length: Int
        var low: UInt8 = 0x80, high: UInt8 = 0xBF  // allowed range of the second byte
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: throw JSONError(offset: i, reason: "invalid UTF-8 (byte \(JSONError.hex(lead)))")
        }
        guard i + length <= n else { throw JSONError(offset: i, reason: "invalid UTF-8 (truncated sequence)") }
        let second = input[i + 1]
        guard second >= low && second <= high else { throw JSONError(offset: i, reason: "invalid UTF-8 sequence") }
        for k in 2..<length where input[i + k] & 0xC0 != 0x80 {
            throw JSONError(offset: i, reason: "invalid UTF-8 sequence")
        }
        i += length
    }
}
