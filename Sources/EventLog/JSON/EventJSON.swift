/// The one place an event becomes JSON. Two layouts:
/// - `wire`, the HTTP shape, CelestialTree's field order first:
///   `{"id","time_unix_nano","type","parents","message"?,"payload"?,"key"?,"stream"?}`, and for a
///   compacted event `"compacted":true,"dropped":{…}` at the end instead of message and payload;
/// - `export`, a JSONL line that `banyan import` reads back into the same ids:
///   `{"id","key"?,"type","ts","stream"?,"message"?,"payload"?,"compacted"?,"dropped"?,"parents"}`.
/// Optional members are omitted when absent; `payload` is the stored compact JSON spliced in
/// as-is. `fields` leaves members out (query answers without payloads, tree nodes); `id` is
/// always written.
public enum EventJSON {
    public struct Fields: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let time = Fields(rawValue: 1 << 0)
        public static let type = Fields(rawValue: 1 << 1)
        public static let parents = Fields(rawValue: 1 << 2)
        public static let message = Fields(rawValue: 1 << 3)
        public static let payload = Fields(rawValue: 1 << 4)
        public static let key = Fields(rawValue: 1 << 5)
        public static let stream = Fields(rawValue: 1 << 6)
        /// `"compacted":true,"dropped":{…}` on a compacted event.
        public static let compaction = Fields(rawValue: 1 << 7)
        public static let all: Fields = [.time, .type, .parents, .message, .payload, .key, .stream, .compaction]
        /// CelestialTree's routes keep its shapes exactly: a compacted event shows there as one
        /// without message and payload.
        public static let celestialTree: Fields = [.time, .type, .parents, .message, .payload, .key, .stream]
    }

    public enum Layout: Sendable {
        case wire, export
    }

    /// `{…}` with the members of `fields`.
    public static func write(_ event: some Source, fields: Fields = .all, layout: Layout = .wire, into w: inout JSONWriter) {
        w.writeRaw("{")
        writeMembers(event, fields: fields, layout: layout, into: &w)
        w.writeRaw("}")
    }

    /// The members only, `"id":…` first, for callers that add their own (tree nodes).
    public static func writeMembers(_ event: some Source, fields: Fields = .all, layout: Layout = .wire, into w: inout JSONWriter) {
        w.writeRaw("\"id\":")
        w.writeUInt(event.id)
        switch layout {
        case .wire:
            if fields.contains(.time) {
                w.writeRaw(",\"time_unix_nano\":")
                w.writeInt(event.timeUnixNano)
            }
            if fields.contains(.type) {
                w.writeRaw(",\"type\":")
                event.writeType(into: &w)
            }
            if fields.contains(.parents) {
                w.writeRaw(",\"parents\":")
                event.writeParents(into: &w)
            }
            if fields.contains(.message) { event.write(.message, ",\"message\":", into: &w) }
            if fields.contains(.payload) { event.write(.payload, ",\"payload\":", into: &w) }
            if fields.contains(.key) { event.write(.key, ",\"key\":", into: &w) }
            if fields.contains(.stream) { event.write(.stream, ",\"stream\":", into: &w) }
            if fields.contains(.compaction), let dropped = event.compaction { writeCompaction(dropped, into: &w) }
        case .export:
            event.write(.key, ",\"key\":", into: &w)
            w.writeRaw(",\"type\":")
            event.writeType(into: &w)
            w.writeRaw(",\"ts\":")
            w.writeInt(event.timeUnixNano)
            event.write(.stream, ",\"stream\":", into: &w)
            event.write(.message, ",\"message\":", into: &w)
            event.write(.payload, ",\"payload\":", into: &w)
            if let dropped = event.compaction { writeCompaction(dropped, into: &w) }
            w.writeRaw(",\"parents\":")
            event.writeParents(into: &w)
        }
    }

    /// What the layouts above read of an event: an `Event`, or a `StoredRecord` whose members
    /// are written straight from its bytes. The layouts are written once, above, for both.
    public protocol Source {
        var id: EventID { get }
        var timeUnixNano: Int64 { get }
        var compaction: Event.Compaction? { get }
        /// The type as a JSON string.
        func writeType(into w: inout JSONWriter)
        /// The parent ids as a JSON array.
        func writeParents(into w: inout JSONWriter)
        /// `prefix` and the member's value, when the event has the member.
        func write(_ member: OptionalMember, _ prefix: StaticString, into w: inout JSONWriter)
    }

    public enum OptionalMember: Sendable {
        case message, payload, key, stream
    }

    /// `"compacted":true` and what was dropped: `"dropped":{"message_bytes","message_crc32c",
    /// "payload_bytes","payload_crc32c"}` (members of what the event had).
    static func writeCompaction(_ dropped: Event.Compaction, into w: inout JSONWriter) {
        w.writeRaw(",\"compacted\":true,\"dropped\":{")
        var first = true
        for (name, value) in [("message_bytes", dropped.messageBytes), ("message_crc32c", dropped.messageCRC.map(UInt64.init)),
                              ("payload_bytes", dropped.payloadBytes), ("payload_crc32c", dropped.payloadCRC.map(UInt64.init))] {
            guard let value else { continue }
            if !first { w.writeRaw(",") }
            first = false
            w.writeString(name)
            w.writeRaw(":")
            w.writeUInt(value)
        }
        w.writeRaw("}")
    }

    /// One event in the wire layout, in a writer of its own.
    public static func encode(_ event: Event, fields: Fields = .all) -> JSONWriter {
        var w = JSONWriter(capacity: 128 + (event.payload?.count ?? 0))
        write(event, fields: fields, into: &w)
        return w
    }
}

extension Event: EventJSON.Source {
    public func writeType(into w: inout JSONWriter) { w.writeString(type) }
    public func writeParents(into w: inout JSONWriter) { w.writeIDs(parents) }
    public func write(_ member: EventJSON.OptionalMember, _ prefix: StaticString, into w: inout JSONWriter) {
        switch member {
        case .message: w.writeOptional(prefix, message)
        case .payload: w.writeOptionalRaw(prefix, payload)
        case .key: w.writeOptional(prefix, key)
        case .stream: w.writeOptional(prefix, stream)
        }
    }
}

extension StoredRecord: EventJSON.Source {
    public func writeType(into w: inout JSONWriter) {
        assert(textChecked, "a record parsed without checkText is decoded, not written from its bytes")
        w.writeString(utf8: bytes[type])
    }

    public func writeParents(into w: inout JSONWriter) { w.writeIDs(parentIDs) }

    public func write(_ member: EventJSON.OptionalMember, _ prefix: StaticString, into w: inout JSONWriter) {
        let range: Range<Int>?
        switch member {
        case .message: range = message
        case .payload: range = payload
        case .key: range = key
        case .stream: range = stream
        }
        guard let range else { return }
        assert(textChecked, "a record parsed without checkText is decoded, not written from its bytes")
        w.writeRaw(prefix)
        if member == .payload { w.bytes.append(contentsOf: bytes[range]) } else { w.writeString(utf8: bytes[range]) }
    }
}
