import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A small HTTP client for a running Banyan server (used by `banyan emit`).
///
/// Thread-safe: wraps AsyncHTTPClient's shared client. Errors from the server surface as
/// `BanyanClientError` carrying the status and the server's `error`/`detail`.
public struct BanyanHTTPClient: Sendable {
    public let baseURL: String
    public var timeout: TimeAmount = .seconds(30)
    /// A bearer token sent with every request, when the server has tokens.
    public var token: String?

    public init(baseURL: String, token: String? = nil) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
    }

    /// POST /emit. `payloadJSON` is JSON text spliced into the body as-is (the server validates it).
    public func emit(type: String, parents: [UInt64], message: String?, payloadJSON: String?) async throws -> UInt64 {
        var body = "{\"type\":" + Self.quote(type) + ",\"parents\":[" + parents.map(String.init).joined(separator: ",") + "]"
        if let message { body += ",\"message\":" + Self.quote(message) }
        if let payloadJSON { body += ",\"payload\":" + payloadJSON }
        body += "}"
        let data = try await send(path: "/emit", method: .POST, body: Array(body.utf8))
        return try JSONDecoder().decode(EmitResponse.self, from: Data(data)).id
    }

    /// GET a path and return the raw body of a 2xx answer.
    public func get(path: String) async throws -> [UInt8] {
        try await send(path: path, method: .GET, body: nil)
    }

    /// Any request: the body of a 2xx answer, a `BanyanClientError` otherwise.
    public func request(_ method: String, path: String, body: [UInt8]? = nil, contentType: String = "application/json", headers: [String: String] = [:]) async throws -> [UInt8] {
        var all = headers
        if body != nil { all["Content-Type"] = contentType }
        return try await exchange(path: path, method: HTTPMethod(rawValue: method), headers: all, body: body).body
    }

    private func send(path: String, method: HTTPMethod, body: [UInt8]?) async throws -> [UInt8] {
        try await exchange(path: path, method: method, headers: ["Content-Type": "application/json"], body: body).body
    }

    /// One request; the body and headers of a 2xx answer, a `BanyanClientError` otherwise.
    func exchange(
        path: String, method: HTTPMethod, headers: [String: String], body: [UInt8]?, bytesMax: Int = 64 << 20
    ) async throws -> (body: [UInt8], headers: HTTPHeaders) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: timeout)
        } catch {
            throw BanyanClientError(status: 0, error: "cannot reach \(baseURL)", detail: "\(error)")
        }
        let bytes = Array((try await response.body.collect(upTo: bytesMax)).readableBytesView)
        guard (200..<300).contains(response.status.code) else {
            let decoded = try? JSONDecoder().decode(ErrorBody.self, from: Data(bytes))
            throw BanyanClientError(
                status: Int(response.status.code), error: decoded?.error ?? "HTTP \(response.status.code)",
                detail: decoded?.detail ?? String(decoding: bytes.prefix(300), as: UTF8.self), field: decoded?.field)
        }
        return (bytes, response.headers)
    }

    /// `s` as a JSON string literal, quotes included.
    public static func quote(_ s: String) -> String {
        // Most strings need no escape: copied whole, not scalar by scalar.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) { return "\"" + s + "\"" }
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

public struct BanyanClientError: Error, Sendable, CustomStringConvertible {
    public var status: Int
    public var error: String
    public var detail: String?
    /// The request part the server named as at fault.
    public var field: String?

    public init(status: Int, error: String, detail: String? = nil, field: String? = nil) {
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
    }

    public var description: String {
        let prefix = status > 0 ? "HTTP \(status): " : ""
        return prefix + error + (detail.map { " (\($0))" } ?? "")
    }
}
