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
    public static func write(_ event: Event, fields: Fields = .all, layout: Layout = .wire, into w: inout JSONWriter) {
        w.writeRaw("{")
        writeMembers(event, fields: fields, layout: layout, into: &w)
        w.writeRaw("}")
    }

    /// The members only, `"id":…` first, for callers that add their own (tree nodes).
    public static func writeMembers(_ event: Event, fields: Fields = .all, layout: Layout = .wire, into w: inout JSONWriter) {
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
                w.writeString(event.type)
            }
            if fields.contains(.parents) {
                w.writeRaw(",\"parents\":")
                w.writeIDs(event.parents)
            }
            if fields.contains(.message) { w.writeOptional(",\"message\":", event.message) }
            if fields.contains(.payload) { w.writeOptionalRaw(",\"payload\":", event.payload) }
            if fields.contains(.key) { w.writeOptional(",\"key\":", event.key) }
            if fields.contains(.stream) { w.writeOptional(",\"stream\":", event.stream) }
            if fields.contains(.compaction), let dropped = event.compaction { writeCompaction(dropped, into: &w) }
        case .export:
            w.writeOptional(",\"key\":", event.key)
            w.writeRaw(",\"type\":")
            w.writeString(event.type)
            w.writeRaw(",\"ts\":")
            w.writeInt(event.timeUnixNano)
            w.writeOptional(",\"stream\":", event.stream)
            w.writeOptional(",\"message\":", event.message)
            w.writeOptionalRaw(",\"payload\":", event.payload)
            if let dropped = event.compaction { writeCompaction(dropped, into: &w) }
            w.writeRaw(",\"parents\":")
            w.writeIDs(event.parents)
        }
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
