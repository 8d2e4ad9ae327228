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

    /// One line of an export (`EventJSON`'s export layout and a newline).
    public static func writeExportLine(_ event: Event, into w: inout JSONWriter) {
        EventJSON.write(event, layout: .export, into: &w)
        w.writeRaw("\n")
    }
}
