import EventLog
import Hummingbird

/// An error answered as `{"error": ..., "detail": ...}` with a 4xx/5xx status: the one place
/// where failures become HTTP responses (CelestialTree's error body shape).
public struct APIError: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var error: String
    public var detail: String?
    /// The request field at fault and the event's index in its batch (native API errors).
    public var field: String?
    public var index: Int?
    /// Where in a query text the problem is (query errors).
    public var line: Int?
    public var column: Int?
    public var headers: HTTPFields = [:]
    /// Members after the standard ones (the leader's URL on a redirect, the ids of a write that
    /// was stored but not confirmed on its replicas).
    package var members: [(name: String, value: JSONValue)] = []

    /// Whether the request's events were stored although the answer is an error (a write not
    /// confirmed on its replicas or under its lease): retrying an unkeyed write would store it twice.
    package var reportsStoredWrite: Bool { members.contains { $0.name == "results" || $0.name == "id" } }

    public init(_ status: HTTPResponse.Status, _ error: String, detail: String? = nil) {
        self.status = status
        self.error = error
        self.detail = detail
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        makeResponse()
    }

    public func makeResponse() -> Response {
        var response = JSONResponse.make(json: body, status: status)
        for field in headers { response.headers.append(field) }
        return response
    }

    /// The JSON body: `{"error", "detail"?, "field"?, "index"?, "line"?, "column"?, ...members}`.
    package var body: [UInt8] {
        var w = JSONWriter(capacity: 64 + (detail?.utf8.count ?? 0))
        w.writeRaw("{\"error\":")
        w.writeString(error)
        w.writeOptional(",\"detail\":", detail)
        w.writeOptional(",\"field\":", field)
        for (name, value) in [(",\"index\":" as StaticString, index), (",\"line\":", line), (",\"column\":", column)] {
            guard let value else { continue }
            w.writeRaw(name)
            w.writeInt(Int64(value))
        }
        for (name, value) in members {
            w.writeRaw(",")
            w.writeString(name)
            w.writeRaw(":")
            w.write(value)
        }
        w.writeRaw("}")
        return w.bytes
    }

    /// Any error as the API answers it: `APIError`s as they are, store errors mapped, anything
    /// else a 500 (logged by the caller, since it is a bug).
    package static func answering(_ error: any Error) -> (error: APIError, unexpected: Bool) {
        switch error {
        case let e as APIError: (e, false)
        case let e as LogError: (from(e, summary: "request failed"), false)
        default: (APIError(.internalServerError, "internal error", detail: "\(error)"), true)
        }
    }

    static func invalidJSON(_ detail: String) -> APIError { APIError(.badRequest, "invalid json", detail: detail) }

    /// The same error, naming the request part at fault.
    public func naming(_ field: String) -> APIError {
        var e = self
        e.field = field
        return e
    }

    /// A native-API error naming the field (and, in a batch, the event index).
    public static func invalid(_ detail: String, field: String, index: Int? = nil, error: String = "invalid request") -> APIError {
        var e = APIError(.badRequest, error, detail: detail)
        e.field = field
        e.index = index
        return e
    }

    /// A store error for one event of a native batch: keeps its index and field.
    static func fromBatch(_ e: LogError) -> APIError {
        var error = from(e, summary: "invalid event")
        error.field = e.field
        error.index = e.index
        return error
    }
    static let badID = APIError(.badRequest, "bad id")
    public static let notFound = APIError(.notFound, "not found")
    /// 405 with the methods the route does allow (RFC 9110: a 405 must send `Allow`).
    static func methodNotAllowed(allow methods: [HTTPRequest.Method]) -> APIError {
        var error = APIError(.methodNotAllowed, "method not allowed")
        error.headers[.allow] = methods.map(\.rawValue).sorted().flatMap { $0 == "GET" ? ["GET", "HEAD"] : [$0] }.joined(separator: ", ")
        return error
    }

    /// Maps a store error to a response, with `error` as the CelestialTree summary (e.g. "emit failed").
    /// Single-event routes leave out the batch index, as CelestialTree's details have none.
    package static func from(_ e: LogError, summary: String, withIndex: Bool = true) -> APIError {
        let detail = withIndex ? e.description : e.message
        switch e.code {
        case .invalidArgument, .notFound, .limitExceeded:
            return APIError(.badRequest, summary, detail: detail)
        case .conflict:
            return APIError(.conflict, summary == "invalid event" ? "key conflict" : summary, detail: detail)
        case .overloaded:
            var error = APIError(.serviceUnavailable, "overloaded", detail: detail)
            error.headers[.retryAfter] = "1"
            return error
        case .closed:
            return APIError(.serviceUnavailable, summary, detail: detail)
        case .pruned:
            // Gone for good from this store, unlike a 404's id that may exist later.
            return APIError(.gone, "pruned", detail: detail)
        case .notLeader:
            // A write racing a role change (the node was fenced or demoted meanwhile).
            var error = APIError(.serviceUnavailable, "not the leader", detail: detail)
            error.headers[.retryAfter] = "1"
            return error
        default:
            return APIError(.internalServerError, summary, detail: detail)
        }
    }
}
