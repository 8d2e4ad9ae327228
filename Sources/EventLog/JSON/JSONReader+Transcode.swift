#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
        // Open containers: whether each is an object; the keys seen so far in the object at level
        // k are in claimPool[k]. Both belong to the reader, so a batch of events allocates them
        // once rather than per payload and per object.
        var stack = openContainers
        stack.removeAll(keepingCapacity: true)
        defer { openContainers = stack }
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
                        let level = stack.count
                        while claimPool.count <= level { claimPool.append(KeyClaims()) }
                        claimPool[level].reset()
                        _ = try transcodeKey(into: &w, level: level)
                    }
                    stack.append(isObject)
                    continue parseValue
                }
            case JSONByte.quote:
                try transcodeString(into: &w)
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
                let isObject = stack[top]
                let close = isObject ? JSONByte.closeBrace : JSONByte.closeBracket
                if try separatorOrClose(close) {
                    w.bytes.append(JSONByte.comma)
                    if isObject {
                        let keyStart = i
                        guard try transcodeKey(into: &w, level: top) else {
                            i = keyStart
                            let key = try parseKey()
                            throw JSONError(offset: keyStart, reason: "duplicate key \(Self.quoteForMessage(key))")
                        }
                    }
                    continue parseValue
                }
                w.bytes.append(close)
                stack.removeLast()
            }
        }
    }
}

/// The keys of one object so far, for duplicate detection, as UTF-8 bytes (an escaped key is
/// compared in its decoded form): a linear scan for the usual handful, a set once the object grows.
/// `reset()` keeps the storage, so a reused `KeyClaims` allocates nothing per object.
struct KeyClaims {
    /// The claimed keys' bytes back to back, and where each one ends.
    private var bytes: [UInt8] = []
    private var ends: [Int] = []
    private var index: Set<[UInt8]>?

    /// Forgets every key, keeping the storage for the next object.
    mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
        index = nil
    }

    /// Returns false if `key` was already claimed.
    mutating func claim(_ key: String) -> Bool {
        var key = key
        return key.withUTF8 { claim($0) }
    }

    /// Returns false if the key with these UTF-8 bytes was already claimed.
    mutating func claim(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
        if index != nil { return index?.insert(Array(key)).inserted ?? false }
        if ends.count < 16 {
            var start = 0
            let found = bytes.withUnsafeBufferPointer { all in
                for end in ends {
                    defer { start = end }
                    guard end - start == key.count else { continue }
                    if key.isEmpty { return true }
                    if let stored = all.baseAddress, let wanted = key.baseAddress, memcmp(stored + start, wanted, key.count) == 0 {
                        return true
                    }
                }
                return false
            }
            if found { return false }
            bytes.append(contentsOf: key)
            ends.append(bytes.count)
            return true
        }
        var set = Set<[UInt8]>(minimumCapacity: 64)
        var start = 0
        for end in ends {
            set.insert(Array(bytes[start..<end]))
            start = end
        }
        let inserted = set.insert(Array(key)).inserted
        index = set
        return inserted
    }
}
