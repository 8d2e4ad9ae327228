import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// One connection's timeouts and its place in the `ConnectionRegistry`: fed by two handlers
/// (`RawBytesObserver` before the HTTP decoder, which sees the first byte of a request head, and
/// `HTTPGuardHandler` after it, which sees heads, bodies and responses), it keeps one timer at
/// the deadline of `ConnectionStateMachine` and closes the connection when it passes.
///
/// Bound to its channel's event loop: every method runs there.
final class ConnectionGuard {
    private var machine: ConnectionStateMachine<ContinuousClock>
    private let registry: ConnectionRegistry
    private let logger: Logger
    private var channel: (any Channel)?
    private var timer: Scheduled<Void>?
    private var timerDeadline: ContinuousClock.Instant?
    private var reportedIdle: Bool?
    /// Where the registry reads whether this connection is idle (nil outside a real listener).
    private var mark: IdleMark?
    /// The response in progress is an SSE stream: a client that half-closes has gone.
    var streaming = false

    init(timeouts: ConnectionTimeouts, registry: ConnectionRegistry, logger: Logger) {
        machine = ConnectionStateMachine(timeouts: timeouts, now: .now)
        self.registry = registry
        self.logger = logger
    }

    func activate(_ channel: any Channel) {
        guard self.channel == nil else { return }
        self.channel = channel
        mark = registry.mark(for: channel)
        changed()
    }

    func deactivate() {
        timer?.cancel()
        timer = nil
        channel = nil
    }

    func bytesReceived() {
        machine.bytesReceived(now: .now)
        changed()
    }

    func headReceived() {
        machine.headReceived(now: .now)
        changed()
    }

    func endReceived() {
        machine.endReceived()
        changed()
    }

    func responseEnded() {
        streaming = false
        machine.responseEnded(now: .now)
        changed()
    }

    /// After any event: tell the registry whether the connection may be evicted, and make sure a
    /// timer fires no later than the deadline. An earlier timer is kept; it finds the new deadline
    /// when it fires (so a busy connection does not reschedule on every request).
    private func changed() {
        guard let channel else { return }
        if reportedIdle != machine.isIdle {
            reportedIdle = machine.isIdle
            mark?.set(idle: machine.isIdle)
        }
        guard let deadline = machine.deadline else { return }
        if let timerDeadline, timer != nil, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        let delay = ContinuousClock.now.duration(to: deadline)
        timer = channel.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: .init(delay)) { [self] in
            timer = nil
            timerDeadline = nil
            fired()
        }
    }

    private func fired() {
        guard let channel else { return }
        if let reason = machine.expired(now: .now) {
            logger.debug("closing a connection", metadata: ["reason": "\(reason)", "remote": "\(channel.remoteAddress?.description ?? "?")"])
            registry.timedOut(reason)
            channel.close(promise: nil)
        } else {
            changed()
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
    }
}

/// First in a connection's pipeline: notes that bytes arrived (the start of a request head that
/// the decoder cannot report until it is complete) and owns the connection's `ConnectionGuard`.
final class RawBytesObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let connection: ConnectionGuard

    init(_ connection: ConnectionGuard) {
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { connection.activate(context.channel) }
    }

    func channelActive(context: ChannelHandlerContext) {
        connection.activate(context.channel)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.deactivate()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        connection.deactivate()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.bytesReceived()
        context.fireChannelRead(data)
    }
}

/// After the HTTP codec: request heads and ends, response ends, and the half-close of a client
/// that went away from an SSE stream (closed at once, instead of at the next heartbeat).
final class HTTPGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart
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

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            if head.headerFields[.contentType]?.hasPrefix("text/event-stream") == true { connection?.streaming = true }
        case .end: connection?.responseEnded()
        case .body: break
        }
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent, connection?.streaming == true {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Hummingbird's HTTP/1.1 child channel with the two guard handlers around its codec.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let responder: HTTPChannelHandler.Responder
    let timeouts: ConnectionTimeouts
    let registry: ConnectionRegistry
    private let inner: HTTP1Channel

    init(responder: @escaping HTTPChannelHandler.Responder, timeouts: ConnectionTimeouts, registry: ConnectionRegistry) {
        self.responder = responder
        self.timeouts = timeouts
        self.registry = registry
        inner = HTTP1Channel(responder: responder, configuration: .init(additionalChannelHandlers: [HTTPGuardHandler()]))
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            let connection = ConnectionGuard(timeouts: timeouts, registry: registry, logger: logger)
            try channel.pipeline.syncOperations.addHandler(RawBytesObserver(connection))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with Banyan's connection timeouts and connection limit.
    static func guarded(timeouts: ConnectionTimeouts, registry: ConnectionRegistry) -> HTTPServerBuilder {
        .init { responder in GuardedHTTP1Channel(responder: responder, timeouts: timeouts, registry: registry) }
    }
}
