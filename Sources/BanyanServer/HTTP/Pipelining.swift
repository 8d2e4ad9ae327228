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

/// HTTP/1.1 pipelining that shares commit groups (docs/HTTP_API.md, Pipelining).
///
/// Hummingbird answers the requests of one connection one after the other, so a client that
/// pipelines 64 `POST /emit`s paid 64 fsyncs in a row. Here an append request whose body is small
/// and whose length is known (`Pipelining.routes`) is read whole and started at once when the
/// client has already sent the request after it or earlier answers are still unwritten; the next
/// request is read as soon as the append has its place in the commit order (`AppendOrder`), so
/// ids follow the order the requests were sent in, and the appends wait for their fsync
/// together. Answers are written in request order by one writer task; they are small, since
/// only appends are started early. Any other request (a read, a large or chunked body,
/// `Connection: close`) first waits for every earlier answer to be written, then runs as
/// Hummingbird runs it, streaming its body in and its answer out. At most `depthMax` answers are
/// unwritten at once (a client that stops reading stops this loop too), so one connection holds
/// at most `depthMax` bodies of `bodyBytesMax` and their answers.
struct Pipelining: Sendable {
    /// Requests of one connection started before the earliest of them is answered
    /// (`ServerConfiguration.pipelineDepthMax`); 1 turns pipelining off.
    var depthMax: Int
    /// The largest body of a request started early (its whole body is held in memory).
    static let bodyBytesMax = 64 << 10
    /// `POST` paths started early: the appends.
    static let routes: Set<Substring> = ["/emit", "/v1/events"]

    /// The body's length when the request may be started early, else nil.
    func earlyLength(_ head: HTTPRequest) -> Int? {
        guard depthMax > 1, head.method == .post, let path = head.path, Self.routes.contains(path.prefix { $0 != "?" }),
            let length = Self.contentLength(head), length <= Self.bodyBytesMax, !Self.asksToClose(head), head.headerFields[.expect] == nil
        else { return nil }
        return length
    }

    static func contentLength(_ head: HTTPRequest) -> Int? {
        head.headerFields[.contentLength].flatMap { Int($0) }
    }

    /// `Connection: close` among the header's tokens, in any case.
    static func asksToClose(_ head: HTTPRequest) -> Bool {
        head.headerFields[values: .connection].contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "close" }
        }
    }
}

/// Hummingbird's `HTTP1Channel` (its pipeline, unchanged) with the request loop of `Pipelining`.
struct PipelinedHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    let responder: HTTPChannelHandler.Responder
    let inner: HTTP1Channel
    let pipelining: Pipelining
    /// The responder without the guard's end-of-response report: an early answer has ended only
    /// once it is written, which the writer reports to `connection`.
    let unreported: HTTPChannelHandler.Responder
    let connection: ConnectionGuard

    init(
        responder: @escaping HTTPChannelHandler.Responder, unreported: @escaping HTTPChannelHandler.Responder, connection: ConnectionGuard,
        configuration: HTTP1Channel.Configuration, pipelining: Pipelining
    ) {
        self.responder = responder
        self.unreported = unreported
        self.connection = connection
        self.inner = HTTP1Channel(responder: responder, configuration: configuration)
        self.pipelining = pipelining
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger)
    }

    func handle(value asyncChannel: Value, logger: Logger) async {
        guard pipelining.depthMax > 1 else { return await inner.handle(value: asyncChannel, logger: logger) }
        do {
            try await withTaskCancellationHandler {
                try await asyncChannel.executeThenClose { inbound, outbound in
                    let parts = InboundParts(inbound.makeAsyncIterator())
                    var answers = AnswerQueue(outbound, channel: asyncChannel.channel, connection: connection)
                    do {
                        try await serve(parts, &answers, outbound, channel: asyncChannel.channel)
                    } catch is HTTPParserError {
                        // The answers before the bad request go out first: their appends are done.
                        do {
                            try await answers.drain()
                        } catch {
                            await answers.abandon()
                            throw error
                        }
                        logger.debug("HTTP parse error, closing connection")
                        try await outbound.write(.head(.init(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])))
                        try await outbound.write(.end(nil))
                    } catch {
                        // Early appends still running must end before the store may close.
                        await answers.abandon()
                        throw error
                    }
                    outbound.finish()
                    try await asyncChannel.channel.closeFuture.get()
                }
            } onCancel: {
                asyncChannel.channel.close(mode: .input, promise: nil)
            }
        } catch {
            logger.trace("Failed to read/write to Channel. Error: \(error)")
        }
    }

    private func serve(
        _ parts: InboundParts, _ answers: inout AnswerQueue, _ outbound: NIOAsyncChannelOutboundWriter<HTTPResponsePart>, channel: any Channel
    ) async throws {
        guard let first = try await parts.next() else { return }
        guard case .head(var head) = first else { throw UnexpectedPart() }
        var taken = 1
        while true {
            // Started early only when the client has already sent the next request, or earlier
            // answers are still unwritten: a client that waits for each answer gains nothing from
            // a task and a buffer per request, which cost about a third of /emit's throughput.
            if let length = pipelining.earlyLength(head), connection.headsReceived > taken || answers.hasUnwritten {
                try await answers.waitForRoom(depthMax: pipelining.depthMax)
                let body = try await parts.wholeBody()
                // A body cut short by the client's end of input is not a request; the answers
                // before it still go out.
                guard body.readableBytes == length else {
                    try await answers.drain()
                    throw UnexpectedPart()
                }
                let placement = answers.add(Request(head: head, body: HummingbirdCore.RequestBody(buffer: body)), unreported)
                await placement.wait()
            } else {
                try await answers.drain()
                let request = Request(head: head, body: HummingbirdCore.RequestBody(asyncSequence: parts.body()))
                try await responder(request, ResponseWriter(outbound: outbound), channel)
                if Pipelining.asksToClose(head) { break }
                try await parts.skipBody()
            }
            guard let part = try await parts.next() else { break }
            guard case .head(let next) = part else { throw UnexpectedPart() }
            head = next
            taken += 1
        }
        try await answers.drain()
    }
}

/// A request part out of place (a body where a head belongs, a body shorter than its length):
/// the connection is closed, as Hummingbird closes it.
private struct UnexpectedPart: Error {}

/// Answers started early, written in request order by one writer task, and counted until written.
private struct AnswerQueue {
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPResponsePart>
    private let channel: any Channel
    private let connection: ConnectionGuard
    private let unwritten = Unwritten()
    private var input: AsyncStream<Task<[HTTPResponsePart], any Error>>.Continuation?
    private var writer: Task<Void, Never>?

    init(_ outbound: NIOAsyncChannelOutboundWriter<HTTPResponsePart>, channel: any Channel, connection: ConnectionGuard) {
        self.outbound = outbound
        self.channel = channel
        self.connection = connection
    }

    /// Starts `request` in a task of its own, its answer buffered for the writer; returns the
    /// signal of its append's place in the commit order (or of its end, for one that has none).
    mutating func add(_ request: Request, _ responder: @escaping HTTPChannelHandler.Responder) -> Placement {
        let placement = Placement()
        let channel = self.channel
        let task = Task { try await Self.answer(request, responder, channel, placement) }
        unwritten.add(task)
        if input == nil {
            let (stream, continuation) = AsyncStream<Task<[HTTPResponsePart], any Error>>.makeStream()
            let (outbound, unwritten, connection) = (self.outbound, self.unwritten, self.connection)
            writer = Task {
                do {
                    for await answer in stream {
                        try await outbound.write(contentsOf: try await answer.value)
                        connection.responseEnded()
                        unwritten.written()
                    }
                } catch {
                    // Nobody will read the answers after this one: end the connection, and let
                    // the request loop stop at its next read or wait.
                    unwritten.fail(error)
                    channel.close(promise: nil)
                }
            }
            input = continuation
        }
        input?.yield(task)
        return placement
    }

    private static func answer(
        _ request: Request, _ responder: HTTPChannelHandler.Responder, _ channel: any Channel, _ placement: Placement
    ) async throws -> [HTTPResponsePart] {
        defer { placement.signal() }
        let (writer, sink) = NIOAsyncChannelOutboundWriter<HTTPResponsePart>.makeTestingWriter()
        try await AppendOrder.current.withValue(AppendOrder { placement.signal() }) {
            try await responder(request, ResponseWriter(outbound: writer), channel)
        }
        writer.finish()
        var written: [HTTPResponsePart] = []
        for await part in sink { written.append(part) }
        return written
    }

    var hasUnwritten: Bool { unwritten.count > 0 }

    func waitForRoom(depthMax: Int) async throws {
        try await unwritten.wait(below: depthMax)
    }

    /// Waits until every answer is written.
    mutating func drain() async throws {
        guard let input, let writer else { return }
        input.finish()
        self.input = nil
        self.writer = nil
        await writer.value
        try unwritten.check()
    }

    /// Stops writing and waits for the early requests still running.
    func abandon() async {
        input?.finish()
        writer?.cancel()
        for task in unwritten.all() { _ = try? await task.value }
    }
}

/// The early answers not yet written, oldest first, shared by the request loop and the writer.
private final class Unwritten: Sendable {
    private struct State {
        var tasks: [Task<[HTTPResponsePart], any Error>] = []
        var first = 0
        var waiter: (below: Int, continuation: CheckedContinuation<Void, any Error>)?
        var failure: (any Error)?
    }
    private let state = Mutex(State())

    func add(_ task: Task<[HTTPResponsePart], any Error>) {
        state.withLock { s in
            // Written tasks are dropped in bulk, so the array does not grow with the connection.
            if s.first > 64, s.first * 2 > s.tasks.count {
                s.tasks.removeFirst(s.first)
                s.first = 0
            }
            s.tasks.append(task)
        }
    }

    func written() {
        let resume: CheckedContinuation<Void, any Error>? = state.withLock { s in
            s.first += 1
            guard let waiter = s.waiter, s.tasks.count - s.first < waiter.below else { return nil }
            s.waiter = nil
            return waiter.continuation
        }
        resume?.resume()
    }

    func fail(_ error: any Error) {
        let resume: CheckedContinuation<Void, any Error>? = state.withLock { s in
            s.failure = s.failure ?? error
            defer { s.waiter = nil }
            return s.waiter?.continuation
        }
        resume?.resume(throwing: error)
    }

    func check() throws {
        if let failure = state.withLock({ $0.failure }) { throw failure }
    }

    func wait(below count: Int) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let now: Result<Void, any Error>? = state.withLock { s in
                if let failure = s.failure { return .failure(failure) }
                if s.tasks.count - s.first < count { return .success(()) }
                s.waiter = (count, continuation)
                return nil
            }
            if let now { continuation.resume(with: now) }
        }
    }

    var count: Int { state.withLock { $0.tasks.count - $0.first } }

    func all() -> [Task<[HTTPResponsePart], any Error>] {
        state.withLock { s in Array(s.tasks[s.first...]) }
    }
}

/// Signalled once: when an early request's append is placed in the commit order, or when the
/// request ends without one (refused before it reached the writer's queue).
final class Placement: Sendable {
    private let state = Mutex<(signalled: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func signal() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { s in
            guard !s.signalled else { return nil }
            s.signalled = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now: Bool = state.withLock { s in
                if s.signalled { return true }
                s.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// The connection's inbound request parts, shared by the request loop and the body of the
/// request being served (one reader at a time: the loop reads on only after the body is done).
private final class InboundParts: @unchecked Sendable {
    private var iterator: NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator
    /// The current request's `.end` was read.
    private var bodyDone = false

    init(_ iterator: NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator) {
        self.iterator = iterator
    }

    func next() async throws -> HTTPRequestPart? {
        let part = try await iterator.next()
        if case .head = part { bodyDone = false }
        return part
    }

    /// The next piece of the current request's body, nil at its end.
    func nextBodyPiece() async throws -> ByteBuffer? {
        guard !bodyDone else { return nil }
        switch try await iterator.next() {
        case .body(let buffer): return buffer
        case .end, nil:
            bodyDone = true
            return nil
        case .head:
            throw UnexpectedPart()
        }
    }

    func wholeBody() async throws -> ByteBuffer {
        var body = ByteBuffer()
        while var piece = try await nextBodyPiece() { body.writeBuffer(&piece) }
        return body
    }

    func skipBody() async throws {
        while try await nextBodyPiece() != nil {}
    }

    func body() -> Body { Body(parts: self) }

    struct Body: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let parts: InboundParts
        func makeAsyncIterator() -> Iterator { Iterator(parts: parts) }
        struct Iterator: AsyncIteratorProtocol {
            let parts: InboundParts
            mutating func next() async throws -> ByteBuffer? { try await parts.nextBodyPiece() }
        }
    }
}
