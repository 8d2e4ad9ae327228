/// JSON text read into `WorkflowValue`s: event pages, payloads, a task's JSON output. A strict
/// JSON reader (RFC 8259): numbers stay exactly as written, strings are plain text (a `{{` in a
/// payload is never a template), nesting is bounded. Not Yams: YAML reads some JSON differently
/// (its control-character and key-length rules). EventLog has the server's reader, but this
/// target must not depend on EventLog.
public enum JSONText {
    public struct Error: Swift.Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public static func parse(_ bytes: [UInt8], depthMax: Int = 64) throws(Error) -> WorkflowValue {
        var reader = Reader(bytes: bytes, depthMax: depthMax)
        reader.space()
        let value = try reader.value(depth: 0)
        reader.space()
        guard reader.at == bytes.count else { throw reader.fail("unexpected text after the value") }
        return value
    }

    struct Reader {
        let bytes: [UInt8]
        let depthMax: Int
        var at = 0

        func fail(_ why: String) -> Error { Error(description: "not JSON at byte \(at): \(why)") }

        mutating func space() {
            while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x09 || bytes[at] == 0x0A || bytes[at] == 0x0D { at += 1 }
        }

        mutating func value(depth: Int) throws(Error) -> WorkflowValue {
            guard depth <= depthMax else { throw fail("nested deeper than \(depthMax)") }
            guard at < bytes.count else { throw fail("it ends where a value should be") }
            switch bytes[at] {
            case UInt8(ascii: "{"):
                at += 1
                var members: [(key: String, value: WorkflowValue)] = []
                space()
                if at < bytes.count, bytes[at] == UInt8(ascii: "}") {
                    at += 1
                    return .object(members)
                }
                while true {
                    space()
                    guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                    let key = try string()
                    space()
                    guard at < bytes.count, bytes[at] == UInt8(ascii: ":") else { throw fail("expected :") }
                    at += 1
                    space()
                    members.append((key, try value(depth: depth + 1)))
                    space()
                    guard at < bytes.count else { throw fail("the object is not closed") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    guard bytes[at] == UInt8(ascii: "}") else { throw fail("expected , or }") }
                    at += 1
                    return .object(members)
                }
            case UInt8(ascii: "["):
                at += 1
                var items: [WorkflowValue] = []
                space()
                if at < bytes.count, bytes[at] == UInt8(ascii: "]") {
                    at += 1
                    return .array(items)
                }
                while true {
                    space()
                    items.append(try value(depth: depth + 1))
                    space()
                    guard at < bytes.count else { throw fail("the array is not closed") }
                    if bytes[at] == UInt8(ascii: ",") { at += 1; continue }
                    guard bytes[at] == UInt8(ascii: "]") else { throw fail("expected , or ]") }
                    at += 1
                    return .array(items)
                }
            case UInt8(ascii: "\""):
                return .text(try string())
            case UInt8(ascii: "t"): return try literal("true", .bool(true))
            case UInt8(ascii: "f"): return try literal("false", .bool(false))
            case UInt8(ascii: "n"): return try literal("null", .null)
            default:
                let start = at
                while at < bytes.count, (bytes[at] >= 0x30 && bytes[at] <= 0x39) || "+-.eE".utf8.contains(bytes[at]) { at += 1 }
                let text = String(decoding: bytes[start..<at], as: UTF8.self)
                guard DefinitionParser.isJSONNumber(text) else {
                    at = start
                    throw fail(text.isEmpty ? "unexpected character" : "\"\(text)\" is not a number")
                }
                return .number(text)
            }
        }

        mutating func literal(_ word: String, _ value: WorkflowValue) throws(Error) -> WorkflowValue {
            let w = Array(word.utf8)
            guard at + w.count <= bytes.count, Array(bytes[at..<(at + w.count)]) == w else { throw fail("unexpected word") }
            at += w.count
            return value
        }

        mutating func string() throws(Error) -> String {
            at += 1
            var out: [UInt8] = []
            while true {
                guard at < bytes.count else { throw fail("the string is not closed") }
                let c = bytes[at]
                at += 1
                switch c {
                case UInt8(ascii: "\""):
                    return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard at < bytes.count else { throw fail("the string is not closed") }
                    let e = bytes[at]
                    at += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800...0xDBFF).contains(scalar) {
                            guard at + 1 < bytes.count, bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u") else { throw fail("a lone surrogate") }
                            at += 2
                            let low = try hex4()
                            guard (0xDC00...0xDFFF).contains(low) else { throw fail("a lone surrogate") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let u = Unicode.Scalar(scalar) else { throw fail("a lone surrogate") }
                        out += Array(String(Character(u)).utf8)
                    default: throw fail("an unknown escape")
                    }
                default:
                    guard c >= 0x20 else { throw fail("a control character inside a string") }
                    out.append(c)
                }
            }
        }

        mutating func hex4() throws(Error) -> UInt32 {
            guard at + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[at..<(at + 4)], as: UTF8.self), radix: 16) else { throw fail("a bad \\u escape") }
            at += 4
            return v
        }
    }
}

extension WorkflowValue {
    /// The member `key` of an object.
    public subscript(_ key: String) -> WorkflowValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    public var stringValue: String? {
        if case .string(let t) = self { return t.text }
        return nil
    }

    public var intValue: Int? {
        if case .number(let n) = self { return Int(n) }
        return nil
    }

    public var arrayValue: [WorkflowValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// A string value (plain text).
    public static func text(_ s: String) -> WorkflowValue { .string(Template(parts: s.isEmpty ? [] : [.text(s)])) }

    /// Compact JSON.
    public var json: String {
        var out = ""
        writeJSON(into: &out)
        return out
    }
}
