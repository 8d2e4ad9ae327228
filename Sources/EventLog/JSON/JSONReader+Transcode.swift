/// Streaming re-serialisation: read one value and write its compact form straight to a
/// `JSONWriter`, with the parser's rules (strictness, duplicate keys, depth) but without building
/// a `JSONValue` tree. The output is byte-for-byte what `JSONValue.serialized()` gives for the
/// same input, so a payload stored this way equals one stored through the tree.
extension JSONReader {
    /// What the value at `i` is, for messages ("must be a string, not number"); nil at the end.
    func peekTypeName() -> String? {
        guard i < input.count else { return nil }
        switch input[i] {
        case JSONByte.openBrace: return "object"
        case JSONByte.openBracket: return "array"
        case JSONByte.quote: return "string"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return "boolean"
        case UInt8(ascii: "n"): return "null"
        default: return "number"
        }
    }

    /// Consumes `null` if it is next.
    mutating func consumeNull() throws(JSONError) -> Bool {
        guard i < input.count, input[i] == UInt8(ascii: "n") else { return false }
        try expectLiteral("null")
        return true
    }

    /// Reads one value at `i` (nested at most `depthMax - depth` further levels) and writes it compactly.
    mutating func transcodeValue(into w: inout JSONWriter, depth: Int) throws(JSONError) {
        // Open containers: whether each is an object, and the keys seen so far in it.
        var stack: [(isObject: Bool, keys: KeyClaims)] = []
        let n = input.count
        parseValue: while true {
            guard i < n else { throw JSONError(offset: i, reason: "unexpected end of input, expected a value") }
            let c = input[i]
            switch c {
            case JSONByte.openBracket, JSONByte.openBrace:
                let isObject = c == JSONByte.openBrace
                try checkDepth(depth + stack.count + 1)
                i += 1
                skipWhitespace()
                let close = isObject ? JSONByte.closeBrace : JSONByte.closeBracket
                w.bytes.append(c)
                if i < n && input[i] == close {
                    i += 1
                    w.bytes.append(close)
                } else {
                    if isObject {
                        let key = try parseKey()
                        w.writeString(key)
                        w.bytes.append(JSONByte.colon)
                        var keys = KeyClaims()
                        _ = keys.claim(key)
                        stack.append((true, keys))
                    } else {
                        stack.append((false, KeyClaims()))
                    }
                    continue parseValue
                }
            case JSONByte.quote:
                w.writeString(try parseString())
            case UInt8(ascii: "t"):
                try expectLiteral("true")
                w.writeBool(true)
            case UInt8(ascii: "f"):
                try expectLiteral("false")
                w.writeBool(false)
            case UInt8(ascii: "n"):
                try expectLiteral("null")
                w.writeNull()
            case JSONByte.minus, JSONByte.zero...JSONByte.nine:
                let start = i
                _ = try parseNumber()
                w.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: input[start..<i]))
            default:
                throw unexpected(c, at: i)
            }
            // The value is complete: continue its container, closing finished ones.
            while true {
                skipWhitespace()
                guard let top = stack.indices.last else { return }
                let isObject = stack[top].isObject
                let close = isObject ? JSONByte.closeBrace : JSONByte.closeBracket
                if try separatorOrClose(close) {
                    w.bytes.append(JSONByte.comma)
                    if isObject {
                        let keyStart = i
                        let key = try parseKey()
                        guard stack[top].keys.claim(key) else {
                            throw JSONError(offset: keyStart, reason: "duplicate key \(Self.quoteForMessage(key))")
                        }
                        w.writeString(key)
                        w.bytes.append(JSONByte.colon)
                    }
                    continue parseValue
                }
                w.bytes.append(close)
                stack.removeLast()
            }
        }
    }
}

/// The keys of one object so far, for duplicate detection: a linear scan for the usual handful,
/// a set once the object grows.
struct KeyClaims {
    private var keys: [String] = []
    private var index: Set<String>?

    /// Returns false if `key` was already claimed.
    mutating func claim(_ key: String) -> Bool {
        if index != nil { return index!.insert(key).inserted }
        if keys.count < 16 {
            if keys.contains(key) { return false }
            keys.append(key)
            return true
        }
        var set = Set(keys)
        let inserted = set.insert(key).inserted
        index = set
        keys = []
        return inserted
    }
}
