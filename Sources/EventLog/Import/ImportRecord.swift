/// One line of the JSONL interchange format (the shared dataset format, extended so exports
/// round-trip):
///
/// ```json
/// {"key":"8bc9…","type":"commit","ts":1112912170000000000,"message":"…","payload":{…},
///  "parents":["e83c…"], "stream":"…", "id": 42}
/// ```
/// - `type` is required; everything else is optional.
/// - `parents` entries are strings (keys of earlier events) or numbers (ids of existing events);
///   `parent_keys` (strings) is accepted too.
/// - `ts` (or `time_unix_nano`) keeps the original time; without it the writer stamps the time.
/// - `id`, written by `export`, pins the id the event must get: an id already in the store is
///   checked against the stored event and skipped, so re-running an import is idempotent.
/// - `compacted` and `dropped`, written by `export` for a compacted event: it is imported without
///   message and payload (they are gone), and a re-import into the compacted store it came from
///   matches by `dropped`.
/// Unknown fields are an error, so a typo never silently drops data.
struct ImportRecord {
    var request: AppendRequest
    var id: EventID?
    /// What the exported event's compaction dropped (nil: not compacted).
    var dropped: Event.Compaction?

    static let fields: Set<String> = [
        "id", "key", "type", "ts", "time_unix_nano", "message", "payload", "parents", "parent_keys", "stream", "compacted", "dropped",
    ]

    static func parse(_ line: [UInt8], depthMax: Int) throws(LogError) -> ImportRecord {
        let value: JSONValue
        do { value = try JSONParser.parse(line, depthMax: depthMax) } catch { throw LogError(.invalidArgument, error.description) }
        guard let members = value.objectValue else { throw LogError(.invalidArgument, "a line must be a JSON object") }
        for member in members where !fields.contains(member.key) {
            throw LogError(.invalidArgument, "unknown field \"\(member.key)\"", field: member.key)
        }
        func string(_ name: String) throws(LogError) -> String? {
            guard let v = value[name], !v.isNull else { return nil }
            guard let s = v.stringValue else { throw LogError(.invalidArgument, "\(name) must be a string", field: name) }
            return s
        }
        func integer(_ name: String) throws(LogError) -> Int64? {
            guard let v = value[name], !v.isNull else { return nil }
            guard let n = v.int64Value else { throw LogError(.invalidArgument, "\(name) must be an integer", field: name) }
            return n
        }
        guard let type = try string("type") else { throw LogError(.invalidArgument, "type is required", field: "type") }
        var parents: [EventID] = []
        var parentKeys: [String] = []
        for name in ["parents", "parent_keys"] {
            guard let list = value[name], !list.isNull else { continue }
            guard let items = list.arrayValue else { throw LogError(.invalidArgument, "\(name) must be an array", field: name) }
            for item in items {
                if let key = item.stringValue {
                    parentKeys.append(key)
                } else if name == "parents", let id = item.uint64Value {
                    parents.append(id)
                } else {
                    throw LogError(.invalidArgument, "\(name) entries must be keys (strings)\(name == "parents" ? " or ids" : "")", field: name)
                }
            }
        }
        var id: EventID?
        if let raw = value["id"], !raw.isNull {
            guard let v = raw.uint64Value, v >= 1 else { throw LogError(.invalidArgument, "id must be a positive integer", field: "id") }
            id = v
        }
        let payload = value["payload"].flatMap { $0.isNull ? nil : $0 }
        var time = try integer("ts")
        if time == nil { time = try integer("time_unix_nano") }
        let request = AppendRequest(
            type: type, parents: parents, parentKeys: parentKeys, key: try string("key"), stream: try string("stream"),
            message: try string("message"), payload: payload, timeUnixNano: time)
        var dropped: Event.Compaction?
        if value["compacted"]?.boolValue == true {
            guard request.message == nil, request.payload == nil else {
                throw LogError(.invalidArgument, "a compacted event has no message or payload", field: "compacted")
            }
            let parts = value["dropped"] ?? .object([])
            func number(_ name: String) throws(LogError) -> UInt64? {
                guard let v = parts[name], !v.isNull else { return nil }
                guard let n = v.uint64Value else { throw LogError(.invalidArgument, "dropped.\(name) must be an unsigned integer", field: "dropped") }
                return n
            }
            func crc(_ name: String) throws(LogError) -> UInt32? {
                guard let n = try number(name) else { return nil }
                guard n <= UInt64(UInt32.max) else { throw LogError(.invalidArgument, "dropped.\(name) is not a CRC-32C", field: "dropped") }
                return UInt32(n)
            }
            dropped = Event.Compaction(
                messageBytes: try number("message_bytes"), messageCRC: try crc("message_crc32c"),
                payloadBytes: try number("payload_bytes"), payloadCRC: try crc("payload_crc32c"))
        }
        return ImportRecord(request: request, id: id, dropped: dropped)
    }
}
