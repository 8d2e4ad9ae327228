/// Appends compact JSON (no whitespace) to a byte buffer.
///
/// Used both to serialize `JSONValue` trees and to build HTTP responses piece by piece. Nothing here
/// recurses, so arbitrarily deep output (hand-built or from `write(_:)`) cannot overflow the stack.
/// The writer does not check structure: callers emitting raw pieces are responsible for commas and brackets,
/// and `writeRaw` input must already be valid JSON. Value type; `Sendable`, but not for concurrent mutation.
public struct JSONWriter: Sendable {
    public var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Serializes `value` compactly. Uses an explicit stack rather than recursion.
    public mutating func write(_ value: JSONValue) {
        // A container being written: `index` is the next child to emit.
        struct Pending {
            var elements: [JSONValue] = []
            var members: [JSONMember] = []
            var isObject: Bool
            var index = 0
        }
        var stack: [Pending] = []
        var next: JSONValue? = value
        while true {
            if let current = next {
                next = nil
                switch current {
                case .null: writeNull()
                case .bool(let b): writeBool(b)
                case .number(let text): writeRawString(text)
                case .string(let s): writeString(s)
                case .array(let elements):
                    if elements.isEmpty {
                        bytes.append(UInt8(ascii: "[")); bytes.append(UInt8(ascii: "]"))
                    } else {
                        bytes.append(UInt8(ascii: "["))
                        stack.append(Pending(elements: elements, isObject: false))
                    }
                case .object(let members):
                    if members.isEmpty {
                        bytes.append(UInt8(ascii: "{")); bytes.append(UInt8(ascii: "}"))
                    } else {
                        bytes.append(UInt8(ascii: "{"))
                        stack.append(Pending(members: members, isObject: true))
                    }
                }
            }
            let top = stack.count - 1
            guard top >= 0 else { return }
            let index = stack[top].index
            if stack[top].isObject {
                if index < stack[top].members.count {
                    if index > 0 { bytes.append(UInt8(ascii: ",")) }
                    let member = stack[top].members[index]
                    writeString(member.key)
                    bytes.append(UInt8(ascii: ":"))
                    next = member.value
                    stack[top].index = index + 1
                } else {
                    bytes.append(UInt8(ascii: "}"))
                    stack.removeLast()
                }
            } else {
                if index < stack[top].elements.count {
                    if index > 0 { bytes.append(UInt8(ascii: ",")) }
                    next = stack[top].elements[index]
                    stack[top].index = index + 1
                } else {
                    bytes.append(UInt8(ascii: "]"))
                    stack.removeLast()
                }
            }
        }
    }

    /// Writes `s` as a quoted JSON string. Escapes only what JSON requires (`"`, `\`, control characters);
    /// everything else, including U+2028/U+2029, is written as raw UTF-8.
    public mutating func writeString(_ s: String) {
        var s = s
        s.withUTF8 { appendQuoted($0) }
    }

    /// Writes UTF-8 text (already checked to be UTF-8) as a quoted JSON string, as `writeString`.
    mutating func writeString(utf8: ArraySlice<UInt8>) {
        utf8.withUnsafeBufferPointer { appendQuoted($0) }
    }

    /// Splices already-valid JSON in as-is.
    public mutating func writeRaw(_ raw: [UInt8]) {
        bytes.append(contentsOf: raw)
    }

    /// Splices a literal fragment in as-is, e.g. `"{\"id\":"`.
    public mutating func writeRaw(_ ascii: StaticString) {
        ascii.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    public mutating func writeUInt(_ v: UInt64) {
        if v < 10 {
            bytes.append(UInt8(ascii: "0") &+ UInt8(v))
            return
        }
        // Digits from the end into a buffer on the stack, then one append: counting them first,
        // then zero-filling and filling the array, was 6% of writing a query page (ids and
        // 19-digit times).
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var k = digits.count
            var rest = v
            repeat {
                k -= 1
                digits[k] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
                rest /= 10
            } while rest > 0
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[k...]))
        }
    }

    public mutating func writeInt(_ v: Int64) {
        if v < 0 { bytes.append(UInt8(ascii: "-")) }
        writeUInt(v.magnitude)
    }

    public mutating func writeBool(_ v: Bool) {
        if v { writeRaw("true") } else { writeRaw("false") }
    }

    public mutating func writeNull() {
        writeRaw("null")
    }

    private mutating func writeRawString(_ text: String) {
        var text = text
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    private mutating func appendQuoted(_ utf8: UnsafeBufferPointer<UInt8>) {
        bytes.append(UInt8(ascii: "\""))
        // Copy unescaped runs in bulk; most strings contain no escapes at all and become a single copy.
        var runStart = 0
        for k in 0..<utf8.count {
            let c = utf8[k]
            guard c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") else { continue }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<k]))
            runStart = k + 1
            bytes.append(UInt8(ascii: "\\"))
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(c)
            case 0x08: bytes.append(UInt8(ascii: "b"))
            case 0x0C: bytes.append(UInt8(ascii: "f"))
            case 0x0A: bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(UInt8(ascii: "t"))
            default:
                let hex: StaticString = "0123456789abcdef"
                bytes.append(UInt8(ascii: "u"))
                bytes.append(UInt8(ascii: "0"))
                bytes.append(UInt8(ascii: "0"))
                bytes.append(hex.utf8Start[Int(c >> 4)])
                bytes.append(hex.utf8Start[Int(c & 0xF)])
            }
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        bytes.append(UInt8(ascii: "\""))
    }
}
