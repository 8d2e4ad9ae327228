/// A failure to parse JSON input.
///
/// `offset` is the byte offset into the UTF-8 input at which the problem was detected, so callers can
/// point a client at the exact spot in a request body or an imported line. Plain value type; `Sendable`.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset in the input where the problem is.
    public var offset: Int
    /// Human-readable cause, e.g. "unexpected character 'x'", "unterminated string", "nesting deeper than 512".
    public var reason: String
    /// The member of the top-level object whose value holds the problem (`type`, `payload`), when
    /// the document is an object and the problem is inside one of its values.
    public var field: String?

    public init(offset: Int, reason: String, field: String? = nil) {
        self.offset = offset
        self.reason = reason
        self.field = field
    }

    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

extension JSONError {
    /// Renders a byte for an error message: printable ASCII is quoted, anything else shown as hex so that
    /// control characters and stray UTF-8 bytes cannot garble the message.
    static func describe(_ byte: UInt8) -> String {
        if byte >= 0x20 && byte < 0x7F {
            return "'\(Character(Unicode.Scalar(byte)))'"
        }
        return "byte " + hex(byte)
    }

    static func hex(_ byte: UInt8) -> String {
        let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F"]
        return "0x" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0xF)])
    }
}
