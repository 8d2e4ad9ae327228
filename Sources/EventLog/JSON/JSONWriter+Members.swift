/// Shapes that recur when responses are written by hand.
extension JSONWriter {
    /// Writes `,"name":"value"` when `value` is present; `name` is the literal `,"name":` prefix.
    public mutating func writeOptional(_ prefix: StaticString, _ value: String?) {
        guard let value else { return }
        writeRaw(prefix)
        writeString(value)
    }

    /// Writes `,"name":<raw JSON>` when `raw` is present (stored payloads are spliced in as-is).
    public mutating func writeOptionalRaw(_ prefix: StaticString, _ raw: [UInt8]?) {
        guard let raw else { return }
        writeRaw(prefix)
        writeRaw(raw)
    }

    /// Writes `[1,2,3]`.
    public mutating func writeIDs(_ ids: some Sequence<UInt64>) {
        writeRaw("[")
        for (i, id) in ids.enumerated() {
            if i > 0 { writeRaw(",") }
            writeUInt(id)
        }
        writeRaw("]")
    }
}

extension JSONValue {
    /// An object with members in the given order, for small hand-made answers.
    public static func members(_ members: KeyValuePairs<String, JSONValue>) -> JSONValue {
        .object(members.map { JSONMember(key: $0.key, value: $0.value) })
    }

    /// An integer number.
    public static func int(_ value: some BinaryInteger) -> JSONValue {
        .number(String(value))
    }
}
