import EventLog

/// Turns a `POST /v1/events` body (a JSON array, one object, or NDJSON) into append requests,
/// naming the index and field of the first bad event. Nothing is appended unless all decode.
enum BatchDecoder {
    static let fields: Set<String> = ["type", "parents", "parent_keys", "key", "stream", "message", "payload"]

    static func decode(_ body: [UInt8], ndjson: Bool, limits: Limits) throws -> [AppendRequest] {
        let values = ndjson ? try lines(body, limits: limits) : try array(body, limits: limits)
        guard !values.isEmpty else { throw APIError.invalid("the batch holds no events", field: "body") }
        guard values.count <= limits.batchEventsMax else {
            var error = APIError(.contentTooLarge, "batch too large", detail: "\(values.count) events, at most \(limits.batchEventsMax) (--batch-events-max)")
            error.field = "body"
            throw error
        }
        return try values.enumerated().map { index, value in try request(value, index: index, limits: limits) }
    }

    private static func array(_ body: [UInt8], limits: Limits) throws -> [JSONValue] {
        let value: JSONValue
        do {
            value = try JSONParser.parse(body, depthMax: limits.jsonDepthMax)
        } catch {
            throw APIError.invalidJSON(error.description).naming("body")
        }
        if let items = value.arrayValue { return items }
        if value.objectValue != nil { return [value] }
        throw APIError.invalidJSON("the body must be an array of events (or one event), not \(value.typeName)").naming("body")
    }

    private static func lines(_ body: [UInt8], limits: Limits) throws -> [JSONValue] {
        var values: [JSONValue] = []
        for line in body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            guard values.count < limits.batchEventsMax else {
                throw APIError(.contentTooLarge, "batch too large", detail: "more than \(limits.batchEventsMax) events (--batch-events-max)").naming("body")
            }
            do {
                values.append(try JSONParser.parse(Array(line), depthMax: limits.jsonDepthMax))
            } catch {
                var e = APIError.invalidJSON("line \(values.count + 1): \(error.description)").naming("body")
                e.index = values.count
                throw e
            }
        }
        return values
    }

    private static func request(_ value: JSONValue, index: Int, limits: Limits) throws -> AppendRequest {
        guard let members = value.objectValue else {
            throw APIError.invalid("an event must be a JSON object, not \(value.typeName)", field: "events", index: index, error: "invalid event")
        }
        for member in members where !fields.contains(member.key) {
            throw APIError.invalid("unknown field \"\(member.key)\"", field: member.key, index: index, error: "invalid event")
        }
        func fail(_ field: String, _ reason: String) -> APIError {
            APIError.invalid(reason, field: field, index: index, error: "invalid event")
        }
        func string(_ name: String) throws -> String? {
            guard let v = value[name], !v.isNull else { return nil }
            guard let s = v.stringValue else { throw fail(name, "\(name) must be a string, not \(v.typeName)") }
            return s
        }
        func list<T>(_ name: String, _ element: String, _ convert: (JSONValue) -> T?) throws -> [T] {
            guard let v = value[name], !v.isNull else { return [] }
            guard let items = v.arrayValue else { throw fail(name, "\(name) must be an array of \(element)") }
            guard items.count <= limits.parentsPerEventMax else {
                throw fail(name, "\(items.count) entries, more than parentsPerEventMax \(limits.parentsPerEventMax)")
            }
            return try items.map { item in
                guard let converted = convert(item) else { throw fail(name, "\(name) must hold \(element), found \(item.typeName)") }
                return converted
            }
        }
        guard let type = try string("type") else { throw fail("type", "type is required") }
        return AppendRequest(
            type: type, parents: try list("parents", "ids", \.uint64Value), parentKeys: try list("parent_keys", "strings", \.stringValue),
            key: try string("key"), stream: try string("stream"), message: try string("message"),
            payload: value["payload"].flatMap { $0.isNull ? nil : $0 })
    }
}
