import Foundation
import NIOHTTP1

/// One event of an append's answer (docs/HTTP_API.md, `POST /v1/events`).
public struct AppendResult: Sendable, Hashable, Decodable {
    public var id: UInt64
    public var duplicate: Bool

    enum CodingKeys: String, CodingKey { case id, duplicate }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(UInt64.self, forKey: .id)
        duplicate = try c.decodeIfPresent(Bool.self, forKey: .duplicate) ?? false
    }
}

struct AppendAnswer: Decodable {
    var results: [AppendResult]
}

/// The native API's reads and batch append. Event bodies and pages come back as the server's
/// JSON text: callers parse what they need (the workflow engine with its own value model), so
/// payload numbers stay exactly as written.
extension BanyanHTTPClient {
    /// `POST /v1/events` with `batch`, a JSON array of events the caller wrote (`type`,
    /// `parents`, `parent_keys`, `key`, `stream`, `message`, `payload`). A key already stored
    /// with the same content answers its original id with `duplicate: true`; with other content
    /// the server answers 409 (`BanyanClientError.status`).
    public func append(batch: [UInt8], durability: String? = nil) async throws -> [AppendResult] {
        let query = durability.map { "?durability=\($0)" } ?? ""
        let body = try await exchange(path: "/v1/events" + query, method: .POST, headers: ["Content-Type": "application/json"], body: batch).body
        return try JSONDecoder().decode(AppendAnswer.self, from: Data(body)).results
    }

    /// `append(batch:)` for a caller that needs only to know the batch is stored (the workflow
    /// engine: its events have keys): the answer's body is not decoded.
    public func appendStored(batch: [UInt8]) async throws {
        _ = try await exchange(path: "/v1/events", method: .POST, headers: ["Content-Type": "application/json"], body: batch)
    }

    /// `GET /v1/events/by-key/{key}`: the event's JSON, nil when no event has the key.
    public func event(key: String) async throws -> [UInt8]? {
        let escaped = key.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? key
        do {
            return try await get(path: "/v1/events/by-key/" + escaped)
        } catch let error as BanyanClientError where error.status == 404 {
            return nil
        }
    }

    /// `GET /v1/events?after=&limit=[&stream=][&type=]`: one page, `{"events": [...], "next", "last_id"}`.
    public func page(after: UInt64, limit: Int, stream: String? = nil, type: String? = nil) async throws -> [UInt8] {
        var path = "/v1/events?after=\(after)&limit=\(limit)"
        if let stream { path += "&stream=" + (stream.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? stream) }
        if let type { path += "&type=" + (type.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? type) }
        return try await get(path: path)
    }

    /// `POST /v1/query` with `text` (and the previous page's `cursor`): the answer's JSON.
    public func query(_ text: String, cursor: String? = nil) async throws -> [UInt8] {
        var body = "{\"query\":" + Self.quote(text)
        if let cursor { body += ",\"cursor\":" + Self.quote(cursor) }
        body += "}"
        return try await exchange(path: "/v1/query", method: .POST, headers: ["Content-Type": "application/json"], body: Array(body.utf8)).body
    }
}
