import EventLog

/// The wire shape of an event, CelestialTree's field order first:
/// `{"id","time_unix_nano","type","parents","message"?,"payload"?,"key"?,"stream"?}`.
/// `message` is omitted when absent, `payload` is the stored compact JSON spliced in as-is,
/// and `key`/`stream` appear only when set (never for events emitted through `/emit`).
enum EventJSON {
    static func write(_ event: Event, into w: inout JSONWriter) {
        w.writeRaw("{\"id\":")
        w.writeUInt(event.id)
        w.writeRaw(",\"time_unix_nano\":")
        w.writeInt(event.timeUnixNano)
        w.writeRaw(",\"type\":")
        w.writeString(event.type)
        w.writeRaw(",\"parents\":")
        w.writeIDs(event.parents)
        w.writeOptional(",\"message\":", event.message)
        w.writeOptionalRaw(",\"payload\":", event.payload)
        w.writeOptional(",\"key\":", event.key)
        w.writeOptional(",\"stream\":", event.stream)
        w.writeRaw("}")
    }

    static func encode(_ event: Event) -> JSONWriter {
        var w = JSONWriter(capacity: 128 + (event.payload?.count ?? 0))
        write(event, into: &w)
        return w
    }
}
