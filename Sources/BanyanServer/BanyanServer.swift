import EventLog
import Hummingbird
import NIOCore
import Logging
import ServiceLifecycle

/// The HTTP server over one `EventStore`: the native `/v1` API, the CelestialTree-compatible
/// routes and `/metrics`. Runs until SIGINT/SIGTERM, then drains in-flight requests and ends
/// streams; the caller closes the store afterwards.
public struct BanyanServer: Sendable {
    public let store: EventStore
    public let config: ServerConfiguration
    public let metrics: ServerMetrics
    public let logger: Logger
    let streams = StreamRegistry()
    public let connections: ConnectionRegistry

    /// - Parameter metrics: pass the same instance as the store's `StoreOptions.observer` to get commit metrics.
    public init(store: EventStore, config: ServerConfiguration, metrics: ServerMetrics = ServerMetrics(), logger: Logger) throws {
        guard config.access.isEnabled || config.isLoopback else {
            throw AccessError(
                "refusing to listen on \(config.host) without authentication: configure tokens (--tokens-file or BANYAN_TOKENS) or bind to 127.0.0.1")
        }
        self.store = store
        self.config = config
        self.metrics = metrics
        self.logger = logger
        connections = ConnectionRegistry(connectionsMax: config.connectionsMax)
    }

    /// The responder, usable without a socket in tests.
    public var responder: some HTTPResponder<BanyanRequestContext> {
        BanyanResponder(
            native: NativeAPI(store: store, config: config, streams: streams),
            celestialTree: CelestialTreeAPI(store: store, config: config, streams: streams),
            access: config.access, metrics: metrics, connections: connections, site: SiteGuard(config: config))
    }

    /// The application: HTTP/1.1 with the connection timeouts, and the listener guarded by the
    /// connection limit and the accept back-off (`ListenerGuard`).
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let (connections, logger) = (self.connections, self.logger)
        return Application(
            responder: responder,
            server: .guarded(timeouts: config.connectionTimeouts, registry: connections),
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: "Banyan"),
            onServerRunning: { channel in
                do {
                    try await channel.eventLoop.submit {
                        try channel.pipeline.syncOperations.addHandler(ListenerGuard(registry: connections, logger: logger), position: .first)
                    }.get()
                } catch {
                    logger.error("cannot guard the listener; serving without the connection limit", metadata: ["error": "\(error)"])
                }
                await onServerRunning(channel.localAddress?.port ?? 0)
            },
            logger: logger)
    }

    /// Serves until a shutdown signal.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await application(onServerRunning: onServerRunning).runService()
    }
}

/// Authorises, dispatches to the route sets, turns errors into JSON responses in one place and
/// records each request's latency under its route pattern.
struct BanyanResponder: HTTPResponder {
    typealias Context = BanyanRequestContext
    let native: NativeAPI
    let celestialTree: CelestialTreeAPI
    let access: AccessControl
    let metrics: ServerMetrics
    let connections: ConnectionRegistry
    let site: SiteGuard

    func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        var response: Response
        if request.method == .head {
            // HEAD is GET without the body (RFC 9110 9.3.2): same status and headers, Content-Length included.
            var head = request.head
            head.method = .get
            response = await dispatch(Request(head: head, body: request.body), context, headOnly: true)
            // The GET's length stays in Content-Length; nothing is written.
            response.body = ResponseBody(contentLength: response.body.contentLength) { writer in try await writer.finish(nil) }
        } else {
            response = await dispatch(request, context)
        }
        site.decorate(&response, for: request)
        metrics.request(
            route: RoutePattern.of(request.uri.path), method: request.method.rawValue, status: response.status.code,
            duration: ContinuousClock.now - started)
        return response
    }

    private func dispatch(_ request: Request, _ context: Context, headOnly: Bool = false) async -> Response {
        do {
            try site.check(request)
            if let preflight = site.preflight(request) { return preflight }
            try access.authorize(request, needs: AccessControl.requiredRole(request))
            let path = request.uri.path
            // A stream answered to HEAD must not be opened: its headers only.
            if headOnly && (path == "/v1/stream" || path == "/subscribe") { return EventStream.headOnlyResponse }
            let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            if parts.first == "v1" {
                if let response = try await native.route(request, parts.dropFirst(), client: ClientConnection(channel: context.channel, connections: connections)) { return response }
            } else if path == "/metrics" {
                guard request.method == .get else { throw APIError.methodNotAllowed(allow: [.get]) }
                return metricsResponse()
            } else if let response = try await celestialTree.route(request, client: ClientConnection(channel: context.channel, connections: connections)) {
                return response
            }
            return JSONResponse.pageNotFound()
        } catch let error as APIError {
            return error.makeResponse()
        } catch let error as LogError {
            return APIError.from(error, summary: "request failed").makeResponse()
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return APIError(.internalServerError, "internal error", detail: "\(error)").makeResponse()
        }
    }

    private func metricsResponse() -> Response {
        let bytes = metrics.render(store: native.store, streams: native.streams, connections: connections)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .contentLength: String(bytes.count)],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// The request context: Hummingbird's core storage and the connection's channel, which SSE
/// streams watch to end as soon as their client is gone.
public struct BanyanRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// The connection a request came on, for routes that outlive a request (SSE streams).
struct ClientConnection: Sendable {
    let channel: any Channel
    let connections: ConnectionRegistry

    /// The client is gone: the connection closed, or the client half-closed it
    /// (`ConnectionMark.inputClosed`). SSE streams check it once a second.
    var isGone: Bool { !channel.isActive || connections.mark(for: channel)?.inputClosed == true }
}

/// Route patterns for metric labels: ids and keys become placeholders so the label space stays small.
enum RoutePattern {
    static let known: Set<Substring> = [
        "v1", "emit", "event", "children", "ancestors", "descendants", "provenance", "roots", "heads", "snapshot",
        "healthz", "version", "subscribe", "metrics",
    ]

    /// Literal segments after the first; anything else in a path is a client-chosen id or key.
    static let literals: Set<Substring> = ["events", "stream", "status", "by-key", "query"]

    static func of(_ path: String) -> String {
        let parts = path.split(separator: "/")
        guard let first = parts.first, known.contains(first), parts.count <= 4 else { return "other" }
        var pattern = "/" + first
        for (i, part) in parts.enumerated().dropFirst() {
            if literals.contains(part) && !(i == 3) {
                pattern += "/" + part
            } else {
                pattern += parts[i - 1] == "by-key" ? "/{key}" : "/{id}"
            }
        }
        return pattern
    }
}
