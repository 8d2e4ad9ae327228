import EventLog
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import Synchronization

/// The requests served on the connection's event loop (docs/HTTP_API.md, "The event-loop path
/// for /emit" and "for tree views"): CelestialTree's `POST /emit` (`FastEmit`) and its tree
/// views, `GET /provenance/{id}` and `GET /descendants/{id}` (`FastTree`).
///
/// A request through Hummingbird costs a task, a request context, a response body writer and
/// several hops between the event loop and Swift concurrency's threads; for these routes, whose
/// work is small, those were about half of the server's CPU and of a small request's latency
/// (docs/PERFORMANCE.md). Here a channel handler (`EventLoopHandler`) reads the request, checks
/// it with the same functions and in the same order as the route, hands the work on without a
/// task (an emit to the writer; a tree is built here when small, else on the heavy pool), and
/// writes the answer from that work's callback on the event loop, with the headers the route's
/// answer has. Answers keep request order.
///
/// Only what needs nothing else is served here (each path's own conditions below); every other
/// request goes to the responder as before, in order: a request that comes while answers served
/// here are unwritten is held (and the connection's reads paused) until they are written, and
/// one that comes while the responder answers an earlier request goes to the responder too.
struct EventLoopPaths: Sendable {
    let emit: FastEmit?
    let tree: FastTree?
    /// Requests of one connection read before the earliest of them is answered
    /// (`ServerConfiguration.pipelineDepthMax`).
    let depthMax: Int
    let answering: EventLoopAnswer

    /// No path is on: the handler is not installed.
    var isEmpty: Bool { emit == nil && tree == nil }
}

/// An answer written on the event loop as the responder would write it (`JSONResponse`,
/// `APIError`, `SiteGuard.decorate`, then Hummingbird's `Date` and `Server`), counted in the
/// metrics under its route's pattern like the responder's.
struct EventLoopAnswer: Sendable {
    let site: SiteGuard
    let metrics: ServerMetrics
    let logger: Logger

    func make(
        _ result: Result<[UInt8], any Error>, route: String, for head: HTTPRequest, started: ContinuousClock.Instant, allocator: ByteBufferAllocator
    ) -> (HTTPResponse, ByteBuffer) {
        let status: HTTPResponse.Status
        let json: [UInt8]
        var extra = HTTPFields()
        switch result {
        case .success(let bytes):
            status = .ok
            json = bytes
        case .failure(let error):
            let (answer, unexpected) = APIError.answering(error)
            if unexpected { logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(head.path ?? route)"]) }
            status = answer.status
            json = answer.body
            extra = answer.headers
        }
        var (headers, body) = JSONResponse.framed(json: json, allocator: allocator)
        headers.append(contentsOf: extra)
        site.decorate(&headers, for: head)
        headers[.date] = HTTPDate.now
        headers[.server] = BanyanServer.serverName
        metrics.request(route: route, method: head.method.rawValue, status: status.code, duration: ContinuousClock.now - started)
        metrics.servedOnEventLoop(route: route)
        return (HTTPResponse(status: status, headerFields: headers), body)
    }
}

/// `POST /emit` on the event loop: the body is checked as the route checks it (`SiteGuard`, the
/// token, the media type, the leader check, `CelestialTreeAPI.emitRequest`) and handed to the
/// writer without a task (`Writes.emitNow`). Pipelined emits are queued to the writer in the
/// order they are read, those of one socket read together, so they share commit groups.
///
/// Served here: a `POST /emit` with a known body length of at most `Pipelining.bodyBytesMax`, no
/// `Expect`, no `Connection: close`, no epoch header, on a server without `--min-replicas` (its
/// wait needs a task).
struct FastEmit: Sendable {
    let writes: Writes
    let access: AccessControl
    let site: SiteGuard

    /// The path served, which is also the route's pattern in the metrics.
    static let path = "/emit"

    /// The body's length when `head` is served here, else nil.
    func bodyLength(_ head: HTTPRequest) -> Int? {
        guard head.method == .post, head.path == Self.path, let length = Pipelining.contentLength(head),
            length <= min(Pipelining.bodyBytesMax, writes.store.limits.eventBodyBytesMax), head.headerFields[.expect] == nil,
            head.headerFields[ReplicationAPI.epochHeader] == nil, !Pipelining.asksToClose(head)
        else { return nil }
        return length
    }

    /// One emit read whole, and what to call with its answer.
    struct Read {
        var head: HTTPRequest
        var body: ByteBuffer
        var done: @Sendable (Result<EventID, any Error>) -> Void
    }

    /// Checks the emits read together and queues those that pass, together; each `done` gets
    /// its answer (on the writer's thread, or at once).
    func start(_ emits: [Read]) {
        var ready: [Writes.EmitNow] = []
        ready.reserveCapacity(emits.count)
        for emit in emits {
            do {
                // The route's order: the site, the token, the media type, the leader, the body.
                let head = emit.head
                try site.check(head)
                try access.authorize(authorization: head.headerFields[.authorization], needs: .write)
                try RequestBody.requireJSON(contentType: head.headerFields[.contentType])
                try writes.replication.requireLeader(redirecting: Self.path)
                ready.append(Writes.EmitNow(request: try CelestialTreeAPI.emitRequest(Array(emit.body.readableBytesView), limits: writes.store.limits), done: emit.done))
            } catch {
                emit.done(.failure(error))
            }
        }
        writes.emitNow(ready, redirecting: Self.path)
    }
}

/// The channel handler of `EventLoopPaths`, after the HTTP codec and `HTTPGuardHandler`, before
/// Hummingbird's handlers. Runs on the connection's event loop only.
final class EventLoopHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// One request served here, from its head to its written answer.
    private final class Entry {
        let head: HTTPRequest
        let started = ContinuousClock.now
        let work: Work
        var body: ByteBuffer
        var answer: (HTTPResponse, ByteBuffer)?
        init(head: HTTPRequest, work: Work, body: ByteBuffer) {
            self.head = head
            self.work = work
            self.body = body
        }
    }

    private enum Work {
        case emit
        case tree(FastTree.Ask)
    }

    private let paths: EventLoopPaths
    private var context: ChannelHandlerContext?
    private var connection: ConnectionGuard?
    /// The request whose body is being read here.
    private var reading: Entry?
    /// The request being passed to the responder, from its head to its end.
    private var passing = false
    /// Requests passed to the responder whose answer has not ended.
    private var passedOn = 0
    /// Requests served here, in request order, until their answer is written.
    private var answers = CircularBuffer<Entry>()
    /// Request parts that must wait: they follow answers that are not written yet. Reads are
    /// paused meanwhile, so this holds at most what one read decoded into.
    private var held = CircularBuffer<Held>()
    private enum Held {
        case part(HTTPRequestPart)
        /// The decoder's error, after the parts decoded before it.
        case error(any Error)
        /// The client's end of input, after its last request.
        case inputClosed
    }
    /// A part was passed on since `resume` began.
    private var forwarded = false
    /// Requests read whole but not yet handed on (`submit`, once the read is over).
    private var unsubmitted: [Entry] = []
    /// A read asked for while paused.
    private var readPending = false
    /// A graceful shutdown began while requests were under way here: nothing more is read or
    /// taken, and the connection closes once their answers are written.
    private var quiescing = false
    /// A request passed on asked to close the connection, the responder closed its output, or a
    /// graceful shutdown began: no request after that is taken.
    private var closing = false
    /// The write of the last answer written here, which a close waits for.
    private var lastWrite: EventLoopFuture<Void>?

    init(_ paths: EventLoopPaths) {
        self.paths = paths
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        connection = try? context.pipeline.syncOperations.handler(type: RawBytesObserver.self).connection
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if held.isEmpty, take(part, context) { return }
        held.append(.part(part))
    }

    /// Serves, passes on or refuses (false: it must wait) one part.
    private func take(_ part: HTTPRequestPart, _ context: ChannelHandlerContext) -> Bool {
        switch part {
        case .head(let head):
            if closing { return false }
            if passedOn == 0, answers.count < paths.depthMax {
                // A tree is read alone: after every earlier request is answered (it sees what
                // they stored) and before any later one is taken (it sees nothing they store),
                // as if the connection's requests were served one after another.
                var work: Work?
                var length = 0
                if !treeUnderWay, let emit = paths.emit, let bodyLength = emit.bodyLength(head) {
                    (work, length) = (.emit, bodyLength)
                } else if answers.isEmpty, let ask = paths.tree?.ask(head) {
                    work = .tree(ask)
                }
                if let work {
                    reading = Entry(head: head, work: work, body: context.channel.allocator.buffer(capacity: length))
                    // The request loop must not count it among the requests the client sent ahead.
                    connection?.headServedAside()
                    return true
                }
            }
            guard answers.isEmpty else { return false }
            passing = true
            passedOn += 1
            // The responder ends the connection after answering it.
            if Pipelining.asksToClose(head) { closing = true }
            forward(part, context)
            return true
        case .body(var buffer):
            if let reading {
                reading.body.writeBuffer(&buffer)
                return true
            }
            guard passing else { return false }
            forward(part, context)
            return true
        case .end:
            if let entry = reading {
                reading = nil
                start(entry, context)
                return true
            }
            guard passing else { return false }
            passing = false
            forward(part, context)
            return true
        }
    }

    private func forward(_ part: HTTPRequestPart, _ context: ChannelHandlerContext) {
        forwarded = true
        context.fireChannelRead(wrapInboundOut(part))
    }

    private func start(_ entry: Entry, _ context: ChannelHandlerContext) {
        answers.append(entry)
        unsubmitted.append(entry)
    }

    /// A tree is being served here (it is then the only request under way here).
    private var treeUnderWay: Bool {
        if case .tree = answers.first?.work { return true }
        return false
    }

    /// Hands the requests read since the last call on: the emits to the writer together (one
    /// wake-up of its thread, and emits read together share a commit group), a tree to
    /// `FastTree`, which builds it here or on the heavy pool.
    private func submit(_ context: ChannelHandlerContext) {
        guard !unsubmitted.isEmpty else { return }
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        var reads: [FastEmit.Read] = []
        reads.reserveCapacity(unsubmitted.count)
        for entry in unsubmitted {
            let boundEntry = NIOLoopBound(entry, eventLoop: loop)
            // Always through `execute`, also for a refusal answered at once: the answer may
            // take held parts, which must not happen inside `take`.
            let done: @Sendable (Result<[UInt8], any Error>) -> Void = { result in
                loop.execute { bound.value.answered(boundEntry.value, result) }
            }
            switch entry.work {
            case .emit:
                reads.append(FastEmit.Read(head: entry.head, body: entry.body) { done($0.map { CelestialTreeAPI.emitAnswer($0).bytes }) })
                entry.body = ByteBuffer()
            case .tree(let ask):
                paths.tree?.start(ask, for: entry.head, done: done)
            }
        }
        unsubmitted.removeAll(keepingCapacity: true)
        if !reads.isEmpty { paths.emit?.start(reads) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        submit(context)
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Whole requests read before the end are served like any other; their answers go nowhere.
        submit(context)
        context.fireChannelInactive()
    }

    private func answered(_ entry: Entry, _ result: Result<[UInt8], any Error>) {
        // Counted in the metrics also when the client has gone: an emit is stored all the same.
        let route = switch entry.work {
        case .emit: FastEmit.path
        case .tree(let ask): ask.direction.route
        }
        entry.answer = paths.answering.make(
            result, route: route, for: entry.head, started: entry.started, allocator: context?.channel.allocator ?? ByteBufferAllocator())
        guard let context else { return }
        var wrote = false
        while let first = answers.first, let answer = first.answer {
            answers.removeFirst()
            context.write(wrapOutboundOut(.head(answer.0)), promise: nil)
            context.write(wrapOutboundOut(.body(answer.1)), promise: nil)
            let end = context.eventLoop.makePromise(of: Void.self)
            context.write(wrapOutboundOut(.end(nil)), promise: end)
            lastWrite = end.futureResult
            connection?.responseEnded()
            wrote = true
        }
        if wrote { context.flush() }
        resume(context)
    }

    /// Takes the held parts that may go now, and reads again once nothing waits.
    private func resume(_ context: ChannelHandlerContext) {
        if quiescing {
            // Requests read whole before the shutdown are served; then the connection closes, after
            // the last answer has gone out (a close drops writes still queued).
            submit(context)
            guard answers.isEmpty else { return }
            if let lastWrite {
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                lastWrite.whenComplete { _ in bound.value.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
            return
        }
        forwarded = false
        var failure: (any Error)?
        var ended = false
        taking: while let next = held.popFirst() {
            switch next {
            case .part(let part):
                guard take(part, context) else {
                    held.prepend(next)
                    break taking
                }
            case .error, .inputClosed:
                // Only once the answers before them are written: the responder answers a bad
                // request with 400 and closes the connection, and ends its request loop with
                // its input, closing the connection's output.
                guard answers.isEmpty else {
                    held.prepend(next)
                    break taking
                }
                if case .error(let error) = next { failure = error } else { ended = true }
                held.removeAll()
            }
        }
        submit(context)
        // Outside a read, the parts passed on reach the request loop only with a read's end
        // (`NIOAsyncChannel` hands them over then).
        if forwarded { context.fireChannelReadComplete() }
        if let failure { return context.fireErrorCaught(failure) }
        if ended { return context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        resumeReading(context)
    }

    private func resumeReading(_ context: ChannelHandlerContext) {
        if readPending, !mustPause {
            readPending = false
            context.read()
        }
    }

    /// Reads wait while requests wait, while the connection's output is full (a client that
    /// does not read its answers stops being read: its answers stay within what one read
    /// decoded) and once a shutdown began with requests under way here.
    private var mustPause: Bool {
        !held.isEmpty || answers.count >= paths.depthMax || quiescing || !(context?.channel.isWritable ?? true)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReading(context)
        context.fireChannelWritabilityChanged()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        // The request loop ended (its output is closed): what comes after is served by no one.
        if mode != .input { closing = true }
        context.close(mode: mode, promise: promise)
    }

    func read(context: ChannelHandlerContext) {
        if mustPause {
            readPending = true
        } else {
            context.read()
        }
    }

    /// A request the decoder could not read comes after the requests before it: the answers of
    /// those served here go out first, then the responder answers it (400, and the connection
    /// closes).
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        submit(context)
        guard error is HTTPParserError else { return context.fireErrorCaught(error) }
        // An emit whose body was cut short is no request.
        reading = nil
        guard answers.isEmpty, held.isEmpty else { return held.append(.error(error)) }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            // The responder's 400 for a bad request answers no request passed on.
            passedOn = max(0, passedOn - 1)
            context.write(data, promise: promise)
            if passedOn == 0, !held.isEmpty || readPending { resume(context) }
            return
        }
        context.write(data, promise: promise)
    }

    /// A graceful shutdown: Hummingbird's handler closes the connection on this event once the
    /// request it is answering is answered, and serves none of the requests read after it. The
    /// same here: no request is taken after the event; while requests are under way here the
    /// event stops here (`RawBytesObserver` repeats it), requests read but not begun (and an emit
    /// read in part) are dropped unanswered and unstored, and the connection closes once the
    /// answers of those under way are written. With none under way the event goes on to
    /// Hummingbird.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        submit(context)
        if event is ChannelShouldQuiesceEvent {
            closing = true
            if quiescing { return }
            // While the responder answers a request passed on, nothing is under way here: its
            // handler closes the connection after that answer.
            if passedOn == 0, reading != nil || !answers.isEmpty || !held.isEmpty {
                quiescing = true
                reading = nil
                held.removeAll()
                resume(context)
                return
            }
        }
        if case .inputClosed = event as? ChannelEvent {
            // An emit whose body was cut short is no request.
            reading = nil
            if !answers.isEmpty || !held.isEmpty { return held.append(.inputClosed) }
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// The `Date` header's value (RFC 9110 IMF-fixdate), formatted once a second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static var now: String {
        let second = time(nil)
        if let text = cache.withLock({ $0.second == second ? $0.text : nil }) { return text }
        let text = format(second)
        cache.withLock { $0 = (second, text) }
        return text
    }

    static func format(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
