/// Wire types of the HTTP API, defined once for the client and the CLI.
///
/// `WireEvent` is the event shape of `GET /event/{id}` and of SSE frames; the payload stays raw
/// JSON text so the client never reinterprets numbers or key order.
public struct WireEvent: Sendable, Hashable, Decodable {
    public var id: UInt64
    public var time_unix_nano: Int64
    public var type: String
    public var parents: [UInt64]
    public var message: String?
    public var key: String?
    public var stream: String?
}

public struct EmitResponse: Sendable, Hashable, Codable {
    public var id: UInt64
}

/// `{"error": ..., "detail": ...}`, the body of every error response.
public struct ErrorBody: Sendable, Hashable, Codable {
    public var error: String
    public var detail: String?
    public var field: String?
}
