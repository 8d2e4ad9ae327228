/// A JSON value as parsed by `JSONParser` or built by hand for `JSONWriter`.
///
/// Invariants:
/// - Object members keep their order of appearance; the parser rejects duplicate keys, so a parsed object
///   never holds two members with the same key.
/// - `.number` holds the literal text exactly as it appeared (validated against the RFC 8259 grammar by the
///   parser), so 64-bit integers and decimals round-trip without passing through `Double`. When building
///   values by hand, the text must already be a valid JSON number; the writer splices it in unchecked.
/// - Equality is structural and literal: `.number("1.0") != .number("1")`, and member order matters.
///
/// Immutable value type; `Sendable`, safe to share across tasks. Equality, hashing and deallocation recurse
/// over the tree, which is fine for anything the parser produces (bounded by `depthMax`).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// Validated RFC 8259 number literal text, e.g. "-12", "1.5e3".
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([JSONMember])
}

/// One `"key": value` pair of a JSON object. Kept in an array (not a dictionary) to preserve member order.
public struct JSONMember: Sendable, Hashable {
    public var key: String
    public var value: JSONValue

    public init(key: String, value: JSONValue) {
        self.key = key
        self.value = value
    }
}

extension JSONValue {
    /// The value of the first member named `key`; nil if this is not an object or the key is absent.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        for member in members where member.key == key {
            return member.value
        }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// Only for plain non-negative integer literals ("0", "42"); nil for "-0", "1.0", "1e3" or overflow,
    /// because silently truncating or rounding an ID or sequence number would be worse than rejecting it.
    public var uint64Value: UInt64? {
        guard case .number(let text) = self else { return nil }
        return Self.parseMagnitude(text.utf8[...])
    }

    /// Integer literals (optionally negative) that fit in `Int64`; nil for fractions, exponents or overflow.
    public var int64Value: Int64? {
        guard case .number(let text) = self else { return nil }
        let utf8 = text.utf8
        if utf8.first == UInt8(ascii: "-") {
            guard let magnitude = Self.parseMagnitude(utf8.dropFirst()),
                  magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return Int64(truncatingIfNeeded: 0 &- magnitude)
        }
        guard let magnitude = Self.parseMagnitude(utf8[...]), magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    /// Any number, converted to the nearest `Double` (may lose precision; huge exponents give ±infinity).
    public var doubleValue: Double? {
        guard case .number(let text) = self else { return nil }
        return Double(text)
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [JSONMember]? {
        if case .object(let m) = self { return m }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// JSON type name, for error messages such as "expected string, got number".
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Compact UTF-8 serialization (no whitespace), same as `JSONWriter.write`.
    public func serialized() -> [UInt8] {
        var writer = JSONWriter()
        writer.write(self)
        return writer.bytes
    }

    /// Decimal digits only, no sign; hand-rolled so that "+1", " 1" or "1_000" (which the stdlib
    /// initializers treat differently) can never sneak through from a hand-built `.number`.
    private static func parseMagnitude(_ digits: Substring.UTF8View) -> UInt64? {
        guard !digits.isEmpty else { return nil }
        var result: UInt64 = 0
        for c in digits {
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(c &- UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            result = sum
        }
        return result
    }
}
