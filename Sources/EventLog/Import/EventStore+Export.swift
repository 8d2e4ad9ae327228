extension EventStore {
    /// Writes events after `after` (up to `through`) as JSONL in the import format, with `id`
    /// and parent ids, handing each page of lines to `write`. Reading is paged by
    /// `Limits.readEventsMax`, so memory stays bounded whatever the store's size.
    public func exportJSONL(after: EventID = 0, through: EventID? = nil, write: ([UInt8]) throws -> Void) throws -> Int {
        let end = min(through ?? lastID, lastID)
        var cursor = after
        var exported = 0
        while cursor < end {
            let page = try events(after: cursor, limit: Int(min(UInt64(limits.readEventsMax), end - cursor)))
            guard let last = page.last else { break }
            var w = JSONWriter(capacity: page.count * 256)
            for event in page {
                Self.writeExportLine(event, into: &w)
            }
            try write(w.bytes)
            exported += page.count
            cursor = last.id
        }
        return exported
    }

    public static func writeExportLine(_ event: Event, into w: inout JSONWriter) {
        w.writeRaw("{\"id\":")
        w.writeUInt(event.id)
        if let key = event.key {
            w.writeRaw(",\"key\":")
            w.writeString(key)
        }
        w.writeRaw(",\"type\":")
        w.writeString(event.type)
        w.writeRaw(",\"ts\":")
        w.writeInt(event.timeUnixNano)
        if let stream = event.stream {
            w.writeRaw(",\"stream\":")
            w.writeString(stream)
        }
        if let message = event.message {
            w.writeRaw(",\"message\":")
            w.writeString(message)
        }
        if let payload = event.payload {
            w.writeRaw(",\"payload\":")
            w.writeRaw(payload)
        }
        w.writeRaw(",\"parents\":[")
        for (i, parent) in event.parents.enumerated() {
            if i > 0 { w.writeRaw(",") }
            w.writeUInt(parent)
        }
        w.writeRaw("]}\n")
    }
}
