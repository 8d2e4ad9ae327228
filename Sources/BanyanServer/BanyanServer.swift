import BanyanClient
import Foundation
import EventLog
import Hummingbird
import NIOCore
import Logging
import ServiceLifecycle

/// The HTTP server over one `EventStore`: the native `/v1` API, the CelestialTree-compatible
/// routes and `/metrics`. Runs until SIGINT/SIGTERM, then drains in-flight requests and ends
/// streams; the caller closes the store afterwards.
public struct BanyanServer: Sendable {
    /// The `Server` header of every answer.
    static let serverName = "Banyan"
    public let store: EventStore
    public let config: ServerConfiguration
    public let metrics: ServerMetrics
    public let logger: Logger
    package let streams = StreamRegistry()
    public let connections: ConnectionRegistry
    public let replication: ReplicationState
    let jobs = MaintenanceJobs()
    package let queryAnswers: QueryAnswers
    package let treeMeta: TreeMetaCache
    /// Routes served beside the server's own (the workflow API of `serve --workflows`), with the
    /// same authorisation, error bodies and metrics.
    public var routes: [Route] = []
    /// More metrics for `/metrics`, after the server's own (the workflow engine's), in
    /// Prometheus's text format.
    public var moreMetrics: (@Sendable (Request) async throws -> [UInt8])?
    /// This node's membership of a cluster (`serve --cluster`), joined before the server is
    /// built; its renewals run as one of the server's services.
    public var cluster: ClusterMember?
    /// More services that start and stop with the server (the gRPC listener, `BanyanGRPC`).
    public var services: [any Service] = []

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
        queryAnswers = QueryAnswers(bytesMax: store.limits.queryAnswerCacheBytesMax)
        treeMeta = TreeMetaCache(bytesMax: store.limits.treeMetaCacheBytesMax)
        connections = ConnectionRegistry(connectionsMax: config.connectionsMax)
        replication = ReplicationState(store: store, leader: config.follow, advertise: config.advertisedURL(port: config.port))
        if let directory = Dashboard.developmentDirectory {
            // A development setting: say so, since a mistyped directory silently serves the built-in files.
            let found = FileManager.default.fileExists(atPath: directory.appendingPathComponent("index.html").path)
            logger.notice(
                "BANYAN_UI_DIR is set: the dashboard's files are read from \(directory.path)\(found ? "" : ", which has no index.html: the built-in files are served")")
        }
        let swept = EventStore.sweepLeftovers(in: config.snapshotDirectory(dataDir: store.path))
        if !swept.isEmpty { logger.notice("removed what interrupted snapshots left behind", metadata: ["names": "\(swept)"]) }
    }

    /// The responder, usable without a socket in tests.
    public var responder: some HTTPResponder<BanyanRequestContext> { banyanResponder }

    /// The native API's operations, for the gRPC services (`BanyanGRPC`) as much as for its routes.
    package var native: NativeAPI {
        NativeAPI(store: store, config: config, streams: streams, replication: replication, cluster: cluster, queryAnswers: queryAnswers)
    }

    private var banyanResponder: BanyanResponder {
        let celestialTree = CelestialTreeAPI(store: store, config: config, streams: streams, replication: replication, treeMeta: treeMeta)
        let replicationAPI = ReplicationAPI(store: store, replication: replication, config: config, logger: logger)
        let maintenanceAPI = MaintenanceAPI(snapshots: snapshots, compactions: compactions, jobs: jobs, access: config.access, limits: store.limits)
        let (metrics, store, streams, connections, replication, queryAnswers, treeMeta) = (
            self.metrics, self.store, self.streams, self.connections, self.replication, self.queryAnswers, self.treeMeta
        )
        let more = moreMetrics
        let metricsRoute = Route(.get, "/metrics", role: .read) { request, _ in
            var bytes = metrics.render(store: store, streams: streams, connections: connections, replication: replication, queryAnswers: queryAnswers, treeMeta: treeMeta)
            if let more {
                // The server's own metrics are answered even when the others cannot be read.
                do { bytes += try await more(request) } catch { bytes += Array("# more metrics could not be read: \("\(error)".replacingOccurrences(of: "\n", with: " "))\n".utf8) }
            }
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .contentLength: String(bytes.count)],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        return BanyanResponder(
            table: RouteTable(
                routes: native.routes + celestialTree.routes + replicationAPI.routes + maintenanceAPI.routes + ClusterAPI(member: cluster).routes + [metricsRoute]
                    + Dashboard.routes + routes),
            access: config.access, metrics: metrics, connections: connections, site: SiteGuard(config: config),
            replication: replication, readWait: config.readWait, logger: logger)
    }

    var snapshots: Snapshots {
        Snapshots(
            store: store, directory: config.snapshotDirectory(dataDir: store.path), keep: config.snapshotKeep, jobs: jobs,
            record: MaintenanceRecord(store: store, logger: logger), metrics: metrics, logger: logger)
    }

    var compactions: Compactions {
        Compactions(
            store: store, jobs: jobs, record: MaintenanceRecord(store: store, logger: logger), replication: replication, metrics: metrics, logger: logger)
    }

    /// The application: HTTP/1.1 with the connection timeouts, and the listener guarded by the
    /// connection limit and the accept back-off (`ListenerGuard`).
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let (connections, logger, replication, config) = (self.connections, self.logger, self.replication, self.config)
        var services: [any Service] = []
        if let leader = config.follow, store.role == .follower {
            services.append(Follower(store: store, replication: replication, client: BanyanHTTPClient(baseURL: leader, token: config.leaderToken), logger: logger))
        }
        if store.role != nil {
            services.append(MaintenanceWorker(store: store, compactions: compactions, logger: logger))
        }
        if let every = config.compactEvery, let olderThan = config.compactOlderThan {
            let request = Compactions.Request(olderThan: olderThan)
            services.append(MaintenanceSchedule(every: every, kind: "compaction", logger: logger) { [compactions, replication] in
                // Only the leader asks; followers carry out what it asked.
                guard replication.role == .leader else { return }
                _ = try await compactions.create(request, requestedBy: "schedule")
            })
        }
        if let cluster { services.append(cluster) }
        services += self.services
        if let every = config.snapshotEvery {
            services.append(MaintenanceSchedule(every: every, kind: "snapshot", logger: logger) { [snapshots, prune = config.snapshotPrune] in
                _ = try await snapshots.create(requestedBy: "schedule", prune: prune)
            })
        }
        let responder = banyanResponder
        let site = SiteGuard(config: config)
        let eventLoop = EventLoopPaths(
            // `--min-replicas` waits in a task: such a server answers /emit through the responder.
            emit: config.emitOnEventLoop && config.minReplicas == 0
                ? FastEmit(writes: Writes(store: store, replication: replication, config: config), access: config.access, site: site) : nil,
            tree: config.treesOnEventLoop ? FastTree(store: store, treeMeta: treeMeta, access: config.access, site: site) : nil,
            depthMax: config.pipelineDepthMax, answering: EventLoopAnswer(site: site, metrics: metrics, logger: logger))
        return Application(
            responder: responder,
            server: .guarded(
                timeouts: config.connectionTimeouts, registry: connections, pipelining: Pipelining(depthMax: config.pipelineDepthMax), responder: responder,
                eventLoop: eventLoop.isEmpty ? nil : eventLoop),
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: Self.serverName),
            services: services,
            onServerRunning: { channel in
                if config.advertise == nil, config.port == 0, let port = channel.localAddress?.port {
                    replication.setAdvertise(config.advertisedURL(port: port))
                }
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

    /// An application serving `routes` alone, without a store (the workflow engine's own API,
    /// `banyan workflow engine --listen`): the same dispatch, `405`s, error bodies, connection
    /// limit and timeouts as the server. No tokens are checked here: the routes pass the
    /// caller's token on to the Banyan server they use, which checks it.
    public static func application(
        routes: [Route], config: ServerConfiguration, logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let connections = ConnectionRegistry(connectionsMax: config.connectionsMax)
        let metrics = ServerMetrics()
        let responder = BanyanResponder(
            table: RouteTable(routes: routes), access: AccessControl(), metrics: metrics, connections: connections, site: SiteGuard(config: config),
            replication: nil, readWait: config.readWait, logger: logger)
        return Application(
            responder: responder,
            server: .guarded(timeouts: config.connectionTimeouts, registry: connections, pipelining: Pipelining(depthMax: config.pipelineDepthMax), responder: responder),
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: Self.serverName),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Serves until a shutdown signal.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        // The service group shuts services down one after another, the HTTP server (which waits
        // for in-flight requests, such as a compaction asked over HTTP) before the maintenance
        // worker: so running jobs are told to stop on the signal itself.
        let jobs = self.jobs
        let logger = self.logger
        let sources = [SIGTERM, SIGINT].map { number in
            // A signal source needs the default action off; the service group, which also
            // handles these two, turns it off as well.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number)
            source.setEventHandler {
                // Says when a shutdown began, so a slow one shows where the time went.
                logger.notice("shutting down on a signal", metadata: ["signal": "\(number)"])
                jobs.requestStop()
            }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }
        try await application(onServerRunning: onServerRunning).runService()
    }
}

/// Authorises, dispatches through the route table, turns errors into JSON responses in one place
/// and records each request's latency under its route pattern.
struct BanyanResponder: HTTPResponder {
    typealias Context = BanyanRequestContext
    let table: RouteTable
    let access: AccessControl
    let metrics: ServerMetrics
    let connections: ConnectionRegistry
    let site: SiteGuard
    /// Nil for an application without a store (`application(routes:config:logger:)`).
    let replication: ReplicationState?
    let readWait: Duration
    let logger: Logger

    func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        var (response, pattern): (Response, String)
        if request.method == .head {
            // HEAD is GET without the body (RFC 9110 9.3.2): same status and headers, Content-Length included.
            var head = request.head
            head.method = .get
            (response, pattern) = await dispatch(Request(head: head, body: request.body), context, headOnly: true)
            // The GET's length stays in Content-Length; nothing is written.
            response.body = ResponseBody(contentLength: response.body.contentLength) { writer in try await writer.finish(nil) }
        } else {
            (response, pattern) = await dispatch(request, context)
        }
        site.decorate(&response, for: request)
        metrics.request(route: pattern, method: request.method.rawValue, status: response.status.code, duration: ContinuousClock.now - started)
        return response
    }

    /// The response, and the route pattern that labels the request in metrics ("other" when no
    /// route serves the path: a raw path would let clients grow the label space).
    private func dispatch(_ request: Request, _ context: Context, headOnly: Bool = false) async -> (Response, String) {
        var pattern = "other"
        do {
            try site.check(request, webSocket: context.webSocket != nil)
            if let preflight = site.preflight(request) { return (preflight, pattern) }
            switch table.match(path: request.uri.path, method: request.method) {
            case .found(let route, let parameters):
                pattern = route.pattern
                try access.authorize(request, needs: route.role)
                if let replication {
                    if let epoch = request.headers[ReplicationAPI.epochHeader].flatMap(UInt64.init), (route.role ?? .read) >= .write,
                        replication.observe(epoch: epoch)
                    {
                        logger.warning("fenced: a request presented a newer epoch; this node takes no more writes", metadata: ["epoch": "\(epoch)"])
                    }
                    if route.role == .read { try await ReadGate.wait(request, store: replication.store, bound: readWait) }
                }
                if context.webSocket != nil, !route.webSocket {
                    throw APIError.invalid("\(route.pattern) does not speak WebSocket", field: "Upgrade")
                }
                let client = ClientConnection(channel: context.channel, connections: connections)
                let routeContext = RouteContext(parameters: parameters, client: client, headOnly: headOnly, webSocket: context.webSocket)
                return (try await route.handler(request, routeContext), pattern)
            case .wrongMethod(let served, let allow):
                pattern = served
                try access.authorize(request, needs: RouteTable.defaultRole(request.method))
                throw APIError.methodNotAllowed(allow: allow)
            case .none:
                try access.authorize(request, needs: RouteTable.defaultRole(request.method))
                return (JSONResponse.pageNotFound(), pattern)
            }
        } catch {
            let (answer, unexpected) = APIError.answering(error)
            if unexpected { context.logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"]) }
            return (answer.makeResponse(), pattern)
        }
    }
}

/// The request context: Hummingbird's core storage and the connection's channel, which SSE
/// streams watch to end as soon as their client is gone.
public struct BanyanRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    /// Set on a WebSocket handshake (`WebSocketUpgrade`).
    var webSocket: WebSocketUpgrade?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// The connection a request came on, for routes that outlive a request (SSE streams).
public struct ClientConnection: Sendable {
    let channel: any Channel
    let connections: ConnectionRegistry

    /// The client is gone: the connection closed, or the client half-closed it
    /// (`ConnectionMark.inputClosed`). SSE streams check it once a second.
    public var isGone: Bool { !channel.isActive || connections.mark(for: channel)?.inputClosed == true }
}
