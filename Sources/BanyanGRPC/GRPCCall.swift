import BanyanServer
import EventLog
import GRPCCore

/// What every RPC goes through, once: the bearer token against the method's role (the HTTP
/// roles), the answer's status in `/metrics` under the RPC's path, and errors mapped from the
/// HTTP contract to gRPC status codes with the JSON error body kept as trailing metadata
/// (`banyan-error-json`), so a client sees the same `error`, `detail`, `field`, `index`, `line`,
/// `column` and extra members (`leader`, `applied_id`, the ids of an unconfirmed write) as over
/// HTTP. docs/CLIENTS.md, "gRPC", has the table.
struct GRPCCall: Sendable {
    let server: BanyanServer

    func run<Output: Sendable>(
        _ method: MethodDescriptor, role: Role, metadata: Metadata, summary: String? = nil, _ body: () async throws -> Output
    ) async throws -> Output {
        let started = ContinuousClock.now
        var status = 200
        defer {
            server.metrics.request(route: "/" + method.fullyQualifiedMethod, method: "GRPC", status: status, duration: ContinuousClock.now - started)
        }
        do {
            try server.config.access.authorize(authorization: metadata[stringValues: "authorization"].first(where: { _ in true }), needs: role)
            return try await body()
        } catch {
            let (rpc, http) = Self.rpcError(error, summary: summary)
            status = http
            throw rpc
        }
    }

    /// The gRPC status for an error and the HTTP status it stands for. `summary`: CelestialTree's
    /// messages say "emit failed: <detail>" without the error word of the JSON body.
    static func rpcError(_ error: any Error, summary: String? = nil) -> (RPCError, Int) {
        let api: APIError
        switch error {
        case let e as APIError: api = e
        case let e as LogError: api = APIError.from(e, summary: "request failed")
        case let e as RPCError: return (e, 500)
        case is CancellationError: return (RPCError(code: .cancelled, message: "the call was cancelled"), 499)
        default: api = APIError(.internalServerError, "internal error", detail: "\(error)")
        }
        let status = api.status.code
        var metadata = Metadata()
        metadata.addString(String(decoding: api.body, as: UTF8.self), forKey: "banyan-error-json")
        if let retry = api.headers[.retryAfter] { metadata.addString(retry, forKey: "retry-after") }
        let words = summary ?? api.error
        let message = api.detail.map { "\(words): \($0)" } ?? words
        return (RPCError(code: code(forHTTPStatus: status), message: message, metadata: metadata), status)
    }

    /// HTTP status → gRPC code. A follower's 307 is FAILED_PRECONDITION (gRPC cannot redirect:
    /// send the write to the leader named in the error); 503s are UNAVAILABLE (retry later).
    static func code(forHTTPStatus status: Int) -> RPCError.Code {
        switch status {
        case 400: .invalidArgument
        case 401: .unauthenticated
        case 403: .permissionDenied
        case 404: .notFound
        case 307, 412: .failedPrecondition
        case 409: .alreadyExists
        case 410: .outOfRange
        case 413: .resourceExhausted
        case 503: .unavailable
        case 504: .deadlineExceeded
        default: .internalError
        }
    }
}
