import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// One connection's timeouts and its place in the `ConnectionRegistry`. Fed by two handlers
/// (`RawBytesObserver` before the HTTP decoder, which sees the first byte of a request head, and
/// `HTTPGuardHandler` after it, which sees heads and ends of requests) and by the responder
/// wrapper of `GuardedHTTP1Channel`, which sees each response end (for an answer
/// `PipelinedHTTP1Channel` started early, its writer reports the end once the answer is written);
/// it keeps one timer at the
/// deadline of `ConnectionStateMachine` and closes the connection when it passes.
///
/// Thread-safe behind one `Mutex`: the handlers call it on the event loop, the responder wrapper
/// from the request's task. (Seeing response ends in a handler's `write` instead cost 10% of
/// `GET /event/{id}` throughput, measured side by side.)
final class ConnectionGuard: Sendable {
    private struct State {
        var machine: ConnectionStateMachine<ContinuousClock>
        var channel: (any Channel)?
        var timer: Scheduled<Void>?
        var timerDeadline: ContinuousClock.Instant?
        var reportedIdle: Bool?
        /// Where the registry reads whether this connection is idle (nil outside a real listener).
        var mark: ConnectionMark?
    }

    private let state: Mutex<State>
    private let registry: ConnectionRegistry
    private let logger: Logger

    init(timeouts: ConnectionTimeouts, registry: ConnectionRegistry, logger: Logger) {
        state = Mutex(State(machine: ConnectionStateMachine(timeouts: timeouts, now: .now)))
        self.registry = registry
        self.logger = logger
    }

    var mark: ConnectionMark? { state.withLock { $0.mark } }

    func activate(_ channel: any Channel) {
        let mark = registry.mark(for: channel)
        update { s in
            guard s.channel == nil else { return }
            s.channel = channel
            s.mark = mark
        }
    }

    func deactivate() {
        state.withLock { s in
            s.timer?.cancel()
            s.timer = nil
            s.channel = nil
        }
    }

    /// Most reads carry bytes of a head or body already under way: nothing changes then.
    func bytesReceived() {
        guard state.withLock({ $0.machine.bytesStartAHead }) else { return }
        update { $0.machine.bytesReceived(now: .now) }
    }
    func headReceived() {
        heads.add(1, ordering: .relaxed)
        update { $0.machine.headReceived(now: .now) }
    }
    /// Request heads decoded so far: more than a request loop has taken means the client has
    /// pipelined the next request already (`PipelinedHTTP1Channel`).
    var headsReceived: Int { heads.load(ordering: .relaxed) }
    /// A request served on the event loop (`EventLoopHandler`), which the request loop never sees.
    func headServedAside() { heads.subtract(1, ordering: .relaxed) }
    private let heads = Atomic<Int>(0)
    func endReceived() { update { $0.machine.endReceived() } }
    func responseEnded() { update { $0.machine.responseEnded(now: .now) } }

    /// Nothing of a request has arrived that is not answered: no byte of a head, no body, no
    /// request in flight. A shutdown may close the connection then.
    var isBetweenRequests: Bool { state.withLock { $0.machine.isIdle && $0.machine.bytesStartAHead } }

    /// Whether a graceful shutdown has begun on any connection of the server: one set up after
    /// the quiesce event went out must still take part.
    var serverQuiescing: Bool {
        get { registry.quiescing.load(ordering: .relaxed) }
        set { registry.quiescing.store(newValue, ordering: .relaxed) }
    }

    /// Applies an event, then tells the registry whether the connection may be evicted and makes
    /// sure a timer fires no later than the deadline. An earlier timer is kept; it finds the new
    /// deadline when it fires (so a busy connection does not reschedule on every request).
    private func update(_ event: (inout State) -> Void) {
        state.withLock { s in
            event(&s)
            guard let channel = s.channel else { return }
            let idle = s.machine.isIdle
            if s.reportedIdle != idle {
                s.reportedIdle = idle
                s.mark?.set(idle: idle)
            }
            guard let deadline = s.machine.deadline else { return }
            if let timerDeadline = s.timerDeadline, s.timer != nil, timerDeadline <= deadline { return }
            s.timer?.cancel()
            s.timerDeadline = deadline
            s.timer = channel.eventLoop.scheduleTask(in: .init(ContinuousClock.now.duration(to: deadline))) { [self] in fired() }
        }
    }

    private func fired() {
        let expired: (channel: any Channel, reason: String)? = state.withLock { s in
            s.timer = nil
            s.timerDeadline = nil
            guard let channel = s.channel, let reason = s.machine.expired(now: .now) else { return nil }
            return (channel, reason)
        }
        guard let expired else {
            update { _ in }
            return
        }
        logger.debug("closing a connection", metadata: ["reason": "\(expired.reason)", "remote": "\(expired.channel.remoteAddress?.description ?? "?")"])
        registry.timedOut(expired.reason)
        expired.channel.close(promise: nil)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
    }
}

/// First in a connection's pipeline: notes that bytes arrived (the start of a request head that
/// the decoder cannot report until it is complete), owns the connection's `ConnectionGuard`, and
/// repeats a graceful shutdown's quiesce event until the connection closes.
final class RawBytesObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let connection: ConnectionGuard
    private var quiescing = false
    private var removed = false

    /// How often a connection that is still open after a graceful shutdown began is told again.
    static let requiesceInterval: TimeAmount = .milliseconds(100)

    init(_ connection: ConnectionGuard) {
        self.connection = connection
    }

    /// A graceful shutdown sends each connection NIO's quiesce event, on which Hummingbird's HTTP
    /// state handler closes it after the response in progress, and the server waits for every
    /// connection to close. A connection that may still upgrade to a WebSocket gets that handler
    /// only once its first request is read, so an event that comes before it is dropped, and the
    /// connection then serves its client for as long as the client keeps it busy: `serve
    /// --workflows` waited on its own engine's keep-alive connection, about once in ten
    /// shutdowns under load. So the event is passed on again until the connection closes, and a
    /// connection between requests is closed here (before its first request nothing else would).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            connection.serverQuiescing = true
            startQuiescing(context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func startQuiescing(_ context: ChannelHandlerContext) {
        guard !quiescing else { return }
        quiescing = true
        requiesce(context)
    }

    private func requiesce(_ context: ChannelHandlerContext) {
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.requiesceInterval) { [self] in
            guard !removed, context.channel.isActive else { return }
            if connection.isBetweenRequests {
                context.close(promise: nil)
                return
            }
            context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            requiesce(context)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        connection.activate(context.channel)
        // Accepted before the shutdown began, set up after its quiesce event went out.
        if connection.serverQuiescing { startQuiescing(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        connection.activate(context.channel)
        if connection.serverQuiescing { startQuiescing(context) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.deactivate()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        removed = true
        connection.deactivate()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.bytesReceived()
        context.fireChannelRead(data)
    }
}

/// After the HTTP codec: request heads and ends, and the half-close of a client (which an SSE
/// stream then notices through `ConnectionMark.inputClosed`, instead of at its next heartbeat).
/// Inbound only: see `ConnectionGuard` for why responses are seen elsewhere.
final class HTTPGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    private var connection: ConnectionGuard?

    func handlerAdded(context: ChannelHandlerContext) {
        connection = try? context.pipeline.syncOperations.handler(type: RawBytesObserver.self).connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: connection?.headReceived()
        case .end: connection?.endReceived()
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { connection?.mark?.inputClosed = true }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Hummingbird's HTTP/1.1 child channel (`HTTP1Channel`, or `HTTP1WebSocketUpgradeChannel` when
/// some route speaks WebSocket) with the two guard handlers around its codec and a responder that
/// reports each response's end to the connection's guard. `makeInner` builds the inner channel
/// of one connection from that responder and the connection's guard (a WebSocket session reports
/// to it too).
struct GuardedHTTP1Channel<Inner: ServerChildChannel>: ServerChildChannel {
    struct Value: ServerChildChannelValue {
        let inner: Inner.Value
        let handler: Inner
        let connection: ConnectionGuard
        var channel: any Channel { inner.channel }
    }

    let responder: HTTPChannelHandler.Responder
    let timeouts: ConnectionTimeouts
    let registry: ConnectionRegistry
    /// Builds the inner channel from the responder that reports each response's end to the
    /// connection's guard, the responder that does not (for a channel that reports the ends
    /// itself), and the guard.
    let makeInner: @Sendable (@escaping HTTPChannelHandler.Responder, @escaping HTTPChannelHandler.Responder, ConnectionGuard) -> Inner

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let connection = ConnectionGuard(timeouts: timeouts, registry: registry, logger: logger)
        do {
            try channel.pipeline.syncOperations.addHandler(RawBytesObserver(connection))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        let responder = self.responder
        let handler = makeInner({ request, writer, channel in
            defer { connection.responseEnded() }
            try await responder(request, writer, channel)
        }, responder, connection)
        return handler.setup(channel: channel, logger: logger).map { Value(inner: $0, handler: handler, connection: connection) }
    }

    func handle(value: Value, logger: Logger) async {
        await value.handler.handle(value: value.inner, logger: logger)
        // A failed upgrade (an upgrade request with a body, say) returns here with the channel
        // open and its request counted in flight, which no timeout would then close.
        try? await value.channel.close()
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with Banyan's connection timeouts and connection limit; when some route of
    /// `responder` speaks WebSocket, connections can be upgraded to it (`WebSocketUpgrade`), and
    /// a server without such routes keeps the plain pipeline.
    /// `eventLoop`: the requests served on the event loop (`EventLoopHandler`), on the plain
    /// pipeline only.
    static func guarded(
        timeouts: ConnectionTimeouts, registry: ConnectionRegistry, pipelining: Pipelining, responder routes: BanyanResponder,
        eventLoop: EventLoopPaths? = nil
    ) -> HTTPServerBuilder {
        let http1 = HTTP1Channel.Configuration(additionalChannelHandlers: [HTTPGuardHandler()])
        guard routes.table.routes.contains(where: \.webSocket) else {
            let plain = HTTP1Channel.Configuration(
                additionalChannelHandlers: [HTTPGuardHandler()] + (eventLoop.map { [EventLoopHandler($0)] } ?? []))
            return .init { responder in
                GuardedHTTP1Channel(responder: responder, timeouts: timeouts, registry: registry) { responder, unreported, connection in
                    PipelinedHTTP1Channel(
                        responder: responder, unreported: unreported, connection: connection, configuration: plain, pipelining: pipelining)
                }
            }
        }
        return .init { responder in
            GuardedHTTP1Channel(responder: responder, timeouts: timeouts, registry: registry) { responder, _, connection in
                WebSocketUpgrade.channel(responder: responder, http1: http1, routes: routes, connection: connection)
            }
        }
    }
}
