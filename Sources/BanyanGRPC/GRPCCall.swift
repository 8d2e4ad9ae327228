import BanyanServer
import EventLog
import GRPCCore
import Logging

/// What every RPC goes through, once: the bearer token against the method's role (the HTTP
/// roles), the answer's status in `/metrics` under the RPC's path, and errors mapped from the
/// HTTP contract to gRPC status codes with the JSON error body kept as trailing metadata
/// (`banyan-error-json`), so a client sees the same `error`, `detail`, `field` (renamed as the
/// proto names it), `index`, `line`, `column` and extra members (`leader`, `applied_id`, the ids of an unconfirmed write) as over
/// HTTP. docs/CLIENTS.md, "gRPC", has the table.
struct GRPCCall: Sendable {
    let server: BanyanServer

    /// HTTP's names for request parts that the protos name otherwise.
    static let protoFields = [
        "body": "events", "payload": "payload_json", "Authorization": "authorization", "budget.nodes_max": "nodes_max",
        "budget.time_max_ms": "time_max_ms",
    ]

    func run<Output: Sendable>(
        _ method: MethodDescriptor, role: Role, metadata: Metadata, summary: String? = nil, _ body: () async throws -> Output
    ) async throws -> Output {
        let started = ContinuousClock.now
        var status = 200
        defer {
            server.metrics.request(route: "/" + method.fullyQualifiedMethod, method: "GRPC", status: status, duration: ContinuousClock.now - started)
        }
        do {
            var tokens = metadata[stringValues: "authorization"].makeIterator()
            try server.config.access.authorize(authorization: tokens.next(), needs: role)
            return try await body()
        } catch {
            let (rpc, http, unexpected) = Self.rpcError(error, summary: summary)
            if unexpected { server.logger.error("unhandled error", metadata: ["error": "\(error)", "rpc": "\(method)"]) }
            status = http
            throw rpc
        }
    }

    /// The gRPC status for an error, the HTTP status it stands for (499: the client went away)
    /// and whether it was unexpected. `summary`: CelestialTree's messages say "emit failed:
    /// <detail>" without the error word of the JSON body.
    static func rpcError(_ error: any Error, summary: String? = nil) -> (RPCError, Int, Bool) {
        switch error {
        case let e as RPCError:
            // The transport's own (the client cancelled, the stream broke).
            return (e, e.code == .cancelled || e.code == .unavailable ? 499 : 500, false)
        case is CancellationError:
            return (RPCError(code: .cancelled, message: "the call was cancelled"), 499, false)
        default:
            break
        }
        var (api, unexpected) = APIError.answering(error)
        if let field = api.field, let renamed = protoFields[field] { api.field = renamed }
        let status = api.status.code
        var metadata = Metadata()
        metadata.addString(String(decoding: api.body, as: UTF8.self), forKey: "banyan-error-json")
        if let retry = api.headers[.retryAfter] { metadata.addString(retry, forKey: "retry-after") }
        let words = summary ?? api.error
        let message = api.detail.map { "\(words): \($0)" } ?? words
        // A write stored but not acknowledged must not look retryable as UNAVAILABLE does: an
        // unkeyed retry would store it twice. ABORTED says "decide at a higher level".
        let code = status == 503 && api.reportsStoredWrite ? .aborted : code(forHTTPStatus: status)
        return (RPCError(code: code, message: message, metadata: metadata), status, unexpected)
    }

    /// HTTP status → gRPC code. A follower's 307 is FAILED_PRECONDITION (gRPC cannot redirect:
    /// send the write to the leader named in the error); 503s are UNAVAILABLE (retry later); a
    /// 504 (replicas did not confirm in time) is DEADLINE_EXCEEDED, which gRPC defines as "may
    /// have completed", as it did on the leader.
    static func code(forHTTPStatus status: Int) -> RPCError.Code {
        switch status {
        case 400: .invalidArgument
        case 401: .unauthenticated
        case 403: .permissionDenied
        case 404: .notFound
        case 307: .failedPrecondition
        case 409: .alreadyExists
        case 410: .outOfRange
        case 413: .resourceExhausted
        case 503: .unavailable
        case 504: .deadlineExceeded
        default: .internalError
        }
    }
}
