/// Why a JSON batch of append requests was refused (docs/HTTP_API.md, `POST /v1/events`).
public struct AppendBatchError: Error, Sendable {
    public enum Kind: Sendable {
        /// The body is not valid JSON (`reason` names the byte offset).
        case syntax
        /// Valid JSON, but not an array of events or one event.
        case shape
        /// An event breaks the shape rules; `index` and `field` say which.
        case invalidEvent
        /// More events than `Limits.batchEventsMax`.
        case tooLarge
        /// No events at all.
        case empty
    }

    public var kind: Kind
    public var reason: String
    public var index: Int?
    public var field: String?

    static let empty = AppendBatchError(kind: .empty, reason: "the batch holds no events", field: "body")

    static func tooLarge(_ limits: Limits) -> AppendBatchError {
        AppendBatchError(kind: .tooLarge, reason: "more than \(limits.batchEventsMax) events (--batch-events-max)", field: "body")
    }
}

extension AppendRequest {
    /// The members an event object may have.
    public static let jsonFields: Set<String> = ["type", "parents", "parent_keys", "key", "stream", "message", "payload"]

    /// Decodes a batch: a JSON array of event objects, one event object, or (with `ndjson`) one
    /// event object per line. Streaming: each event's fields are read straight into the request and
    /// its payload re-serialised compactly without building a tree, which is most of the cost of
    /// ingesting over HTTP. A syntax error anywhere wins over a field error; among field errors, the
    /// first event's first bad member is reported.
    public static func decodeBatch(_ body: [UInt8], ndjson: Bool, limits: Limits) throws(AppendBatchError) -> [AppendRequest] {
        let result = body.withUnsafeBufferPointer { buffer -> Result<[AppendRequest], AppendBatchError> in
            var reader = BatchReader(limits: limits)
            return ndjson ? reader.lines(buffer) : reader.document(buffer)
        }
        return try result.get()
    }

    init(type: String, parents: [EventID], parentKeys: [String], key: String?, stream: String?, message: String?, payloadJSON: [UInt8]?) {
        self.init(type: type, parents: parents, parentKeys: parentKeys, key: key, stream: stream, message: message)
        payload = payloadJSON
    }

    public static func tooManyParents(_ entries: Int, _ limits: Limits) -> String {
        "\(entries) entries, more than parentsPerEventMax \(limits.parentsPerEventMax)"
    }

    /// A batch whose events arrive already split into fields (gRPC's `Append`), held to the rules
    /// `decodeBatch` applies while it reads, with the same reasons: events and parents within
    /// `limits`, and each payload (JSON text; `null` is no payload) valid JSON within
    /// `limits.jsonDepthMax`, re-serialised compactly.
    public static func checkedBatch(
        _ count: Int, limits: Limits,
        _ event: (Int) -> (type: String, parents: [EventID], parentKeys: [String], key: String?, stream: String?, message: String?, payloadText: [UInt8]?)
    ) throws(AppendBatchError) -> [AppendRequest] {
        guard count > 0 else { throw .empty }
        guard count <= limits.batchEventsMax else { throw .tooLarge(limits) }
        var requests: [AppendRequest] = []
        requests.reserveCapacity(count)
        for index in 0..<count {
            let e = event(index)
            for (name, entries) in [("parents", e.parents.count), ("parent_keys", e.parentKeys.count)] where entries > limits.parentsPerEventMax {
                throw AppendBatchError(kind: .invalidEvent, reason: tooManyParents(entries, limits), index: index, field: name)
            }
            var payload: [UInt8]?
            if let text = e.payloadText {
                let compact = text.withUnsafeBufferPointer { buffer -> Result<[UInt8], JSONError> in
                    var r = JSONReader(input: buffer, depthMax: limits.jsonDepthMax)
                    var w = JSONWriter(capacity: buffer.count)
                    do throws(JSONError) {
                        r.skipWhitespace()
                        // The depth it has in an HTTP batch (array, event, payload), so that what
                        // is stored one way can be exported and imported the other.
                        try r.transcodeValue(into: &w, depth: 2)
                        try BatchReader.expectEnd(&r)
                    } catch {
                        return .failure(error)
                    }
                    return .success(w.bytes)
                }
                switch compact {
                case .success(let bytes): payload = bytes.elementsEqual("null".utf8) ? nil : bytes
                case .failure(let error): throw AppendBatchError(kind: .syntax, reason: error.description, index: index, field: "payload")
                }
            }
            requests.append(AppendRequest(
                type: e.type, parents: e.parents, parentKeys: e.parentKeys, key: e.key, stream: e.stream, message: e.message, payloadJSON: payload))
        }
        return requests
    }
}

/// One batch being decoded: the requests so far and the first field error, if any.
private struct BatchReader {
    let limits: Limits
    var requests: [AppendRequest] = []
    var count = 0
    var firstError: AppendBatchError?
    /// Where refused values are re-serialised (to check their syntax) and dropped.
    var discard = JSONWriter(capacity: 256)
    /// The member names of the event being read, reused from event to event.
    var eventKeys = KeyClaims()

    init(limits: Limits) { self.limits = limits }

    mutating func document(_ buffer: UnsafeBufferPointer<UInt8>) -> Result<[AppendRequest], AppendBatchError> {
        var r = JSONReader(input: buffer, depthMax: limits.jsonDepthMax)
        let n = buffer.count
        do throws(JSONError) {
            r.skipWhitespace()
            switch r.peekTypeName() {
            case "array":
                r.i += 1
                r.skipWhitespace()
                if r.i < n && buffer[r.i] == JSONByte.closeBracket {
                    r.i += 1
                } else {
                    repeat {
                        guard count < limits.batchEventsMax else { return .failure(.tooLarge(limits)) }
                        try event(&r, depth: 1)
                    } while try r.separatorOrClose(JSONByte.closeBracket)
                }
            case "object":
                try event(&r, depth: 0)
            case let name:
                try r.transcodeValue(into: &discard, depth: 0)
                try Self.expectEnd(&r)
                return .failure(AppendBatchError(
                    kind: .shape, reason: "the body must be an array of events (or one event), not \(name ?? "nothing")", field: "body"))
            }
            try Self.expectEnd(&r)
        } catch {
            return .failure(AppendBatchError(
                kind: .syntax, reason: error.description, index: error.field == nil ? nil : count - 1, field: error.field ?? "body"))
        }
        return finish()
    }

    mutating func lines(_ buffer: UnsafeBufferPointer<UInt8>) -> Result<[AppendRequest], AppendBatchError> {
        var start = 0
        while start < buffer.count {
            var end = start
            while end < buffer.count && buffer[end] != UInt8(ascii: "\n") { end += 1 }
            let line = UnsafeBufferPointer(rebasing: buffer[start..<end])
            start = end + 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            guard count < limits.batchEventsMax else { return .failure(.tooLarge(limits)) }
            var r = JSONReader(input: line, depthMax: limits.jsonDepthMax)
            do throws(JSONError) {
                r.skipWhitespace()
                try event(&r, depth: 0)
                try Self.expectEnd(&r)
            } catch {
                return .failure(AppendBatchError(kind: .syntax, reason: "line \(count): \(error.description)", index: count - 1, field: error.field ?? "body"))
            }
        }
        return finish()
    }

    private mutating func finish() -> Result<[AppendRequest], AppendBatchError> {
        if let firstError { return .failure(firstError) }
        guard !requests.isEmpty else { return .failure(.empty) }
        return .success(requests)
    }

    static func expectEnd(_ r: inout JSONReader) throws(JSONError) {
        r.skipWhitespace()
        guard r.i == r.input.count else {
            throw JSONError(offset: r.i, reason: "unexpected \(JSONError.describe(r.input[r.i])) after top-level value")
        }
    }

    /// Reads one event object at `depth` (0: top level) into a request, or records why not.
    private mutating func event(_ r: inout JSONReader, depth: Int) throws(JSONError) {
        let index = count
        count += 1
        var refused = false
        func fail(_ field: String, _ reason: String, _ me: inout BatchReader) {
            refused = true
            if me.firstError == nil { me.firstError = AppendBatchError(kind: .invalidEvent, reason: reason, index: index, field: field) }
        }
        guard r.peekTypeName() == "object" else {
            let name = r.peekTypeName() ?? "nothing"
            try r.transcodeValue(into: &discard, depth: depth)
            fail("events", "an event must be a JSON object, not \(name)", &self)
            return
        }
        try r.checkDepth(depth + 1)
        r.i += 1
        r.skipWhitespace()
        var type: String?
        var parents: [EventID] = []
        var parentKeys: [String] = []
        var key: String?
        var stream: String?
        var message: String?
        var payload: [UInt8]?
        eventKeys.reset()
        let n = r.input.count
        if r.i < n && r.input[r.i] == JSONByte.closeBrace {
            r.i += 1
        } else {
            repeat {
                let keyStart = r.i
                let name = try r.parseKey()
                guard eventKeys.claim(name) else {
                    throw JSONError(offset: keyStart, reason: "duplicate key \(JSONReader.quoteForMessage(name))")
                }
                do throws(JSONError) {
                switch name {
                case "type", "key", "stream", "message":
                    var value: String?
                    if try r.consumeNull() {
                        value = nil
                    } else if r.peekTypeName() == "string" {
                        value = try r.parseString()
                    } else {
                        let found = r.peekTypeName() ?? "nothing"
                        try r.transcodeValue(into: &discard, depth: depth + 1)
                        fail(name, "\(name) must be a string, not \(found)", &self)
                    }
                    switch name {
                    case "type": type = value
                    case "key": key = value
                    case "stream": stream = value
                    default: message = value
                    }
                case "parents", "parent_keys":
                    let ids = name == "parents"
                    let element = ids ? "ids" : "strings"
                    if try r.consumeNull() { break }
                    guard r.peekTypeName() == "array" else {
                        try r.transcodeValue(into: &discard, depth: depth + 1)
                        fail(name, "\(name) must be an array of \(element)", &self)
                        break
                    }
                    try r.checkDepth(depth + 2)
                    r.i += 1
                    r.skipWhitespace()
                    var entries = 0
                    if r.i < n && r.input[r.i] == JSONByte.closeBracket {
                        r.i += 1
                        break
                    }
                    repeat {
                        entries += 1
                        let found = r.peekTypeName() ?? "nothing"
                        if ids && found == "number" {
                            let start = r.i
                            _ = try r.parseNumber()
                            let text = String(decoding: UnsafeBufferPointer(rebasing: r.input[start..<r.i]), as: UTF8.self)
                            if let id = JSONValue.number(text).uint64Value { parents.append(id) } else {
                                fail(name, "\(name) must hold \(element), found number", &self)
                            }
                        } else if !ids && found == "string" {
                            parentKeys.append(try r.parseString())
                        } else {
                            try r.transcodeValue(into: &discard, depth: depth + 2)
                            fail(name, "\(name) must hold \(element), found \(found)", &self)
                        }
                    } while try r.separatorOrClose(JSONByte.closeBracket)
                    if entries > limits.parentsPerEventMax {
                        fail(name, AppendRequest.tooManyParents(entries, limits), &self)
                    }
                case "payload":
                    if try r.consumeNull() { break }
                    var w = JSONWriter(capacity: 256)
                    try r.transcodeValue(into: &w, depth: depth + 1)
                    payload = w.bytes
                default:
                    try r.transcodeValue(into: &discard, depth: depth + 1)
                    fail(name, "unknown field \"\(name)\"", &self)
                }
                } catch {
                    // A syntax error inside a member's value names the member (and the event).
                    var error = error
                    if error.field == nil { error.field = name }
                    throw error
                }
                discard.bytes.removeAll(keepingCapacity: true)
            } while try r.separatorOrClose(JSONByte.closeBrace)
        }
        guard let type else {
            fail("type", "type is required", &self)
            return
        }
        guard !refused else { return }
        requests.append(AppendRequest(
            type: type, parents: parents, parentKeys: parentKeys, key: key, stream: stream, message: message, payloadJSON: payload))
    }
}
