import EventLog
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
/// and whose length is known (`Pipelining.routes`) is read whole and started at once; the next
/// request is read as soon as the append has its place in the commit order (`AppendOrder`), so
/// ids follow the order the requests were sent in, and the appends wait for their fsync
/// together. Answers are written in request order by one writer task; they are small, since
/// only appends are started early. Any other request (a read, a large or chunked body,
/// `Connection: close`) first waits for every earlier answer to be written, then runs as
/// Hummingbird runs it, streaming its body in and its answer out. At most `depthMax` answers
/// are outstanding; past that the connection waits for the oldest before it reads on.
struct Pipelining: Sendable {
    /// Requests of one connection started before the earliest of them is answered; 1 turns
    /// pipelining off (every request waits for the one before).
    var depthMax = 64
    /// The largest body of a request started early (its whole body is held in memory).
    var bodyBytesMax = 64 << 10
    /// `POST` paths started early: the appends.
    static let routes: Set<Substring> = ["/emit", "/v1/events"]

    func startsEarly(_ head: HTTPRequest) -> Bool {
        guard depthMax > 1, head.method == .post, let path = head.path else { return false }
        let route = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard Self.routes.contains(route), let length = head.headerFields[.contentLength].flatMap({ Int($0) }), length <= bodyBytesMax else { return false }
        if let connection = head.headerFields[.connection], connection.lowercased().contains("close") { return false }
        return head.headerFields[.expect] == nil
    }
}

/// Hummingbird's `HTTP1Channel` (its pipeline, unchanged) with the request loop of `Pipelining`.
struct PipelinedHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    let responder: HTTPChannelHandler.Responder
    let inner: HTTP1Channel
    let pipelining: Pipelining

    init(responder: @escaping HTTPChannelHandler.Responder, configuration: HTTP1Channel.Configuration, pipelining: Pipelining) {
        self.responder = responder
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
                    do {
                        try await serve(parts, outbound, channel: asyncChannel.channel)
                    } catch is HTTPParserError {
                        logger.debug("HTTP parse error, closing connection")
                        try await outbound.write(.head(.init(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])))
                        try await outbound.write(.end(nil))
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

    private func serve(_ parts: InboundParts, _ outbound: NIOAsyncChannelOutboundWriter<HTTPResponsePart>, channel: any Channel) async throws {
        guard let first = try await parts.next() else { return }
        guard case .head(var head) = first else { throw UnexpectedPart() }
        var answers = AnswerQueue(outbound)
        defer { answers.abandon() }
        while true {
            if pipelining.startsEarly(head) {
                let body = try await parts.wholeBody()
                await answers.waitForRoom(depthMax: pipelining.depthMax)
                answers.add(start(Request(head: head, body: HummingbirdCore.RequestBody(buffer: body)), channel: channel))
                try await answers.placed()
            } else {
                try await answers.drain()
                let request = Request(head: head, body: HummingbirdCore.RequestBody(asyncSequence: parts.body()))
                try await responder(request, ResponseWriter(outbound: outbound), channel)
                if request.headers[.connection] == "close" { break }
                try await parts.skipBody()
            }
            guard let part = try await parts.next() else { break }
            guard case .head(let next) = part else { throw UnexpectedPart() }
            head = next
        }
        try await answers.drain()
    }

    /// Runs the responder for an early request in a task of its own, into a buffer.
    private func start(_ request: Request, channel: any Channel) -> (Task<[HTTPResponsePart], any Error>, Placement) {
        let placement = Placement()
        let responder = self.responder
        let task = Task { try await Self.answer(request, responder, channel, placement) }
        return (task, placement)
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
}

/// A request part out of place (a body where a head belongs): the connection is closed, as
/// Hummingbird closes it.
private struct UnexpectedPart: Error {}

/// Answers started early, written in request order by one writer task.
private struct AnswerQueue {
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPResponsePart>
    private var input: AsyncStream<Task<[HTTPResponsePart], any Error>>.Continuation?
    private var writer: Task<Void, any Error>?
    private var last: Placement?
    /// Answers not yet known to be complete, oldest first.
    private var started: [Task<[HTTPResponsePart], any Error>] = []

    init(_ outbound: NIOAsyncChannelOutboundWriter<HTTPResponsePart>) {
        self.outbound = outbound
    }

    mutating func add(_ answer: (Task<[HTTPResponsePart], any Error>, Placement)) {
        if input == nil {
            let (stream, continuation) = AsyncStream<Task<[HTTPResponsePart], any Error>>.makeStream()
            let outbound = self.outbound
            writer = Task {
                for await answer in stream {
                    try await outbound.write(contentsOf: try await answer.value)
                }
            }
            input = continuation
        }
        input?.yield(answer.0)
        last = answer.1
        started.append(answer.0)
    }

    /// Waits until fewer than `depthMax` answers are outstanding: the oldest ones complete first
    /// (their appends were placed first), and the writer writes them right after.
    mutating func waitForRoom(depthMax: Int) async {
        while started.count >= depthMax {
            _ = try? await started.removeFirst().value
        }
    }

    /// Waits until the latest request has its place in the commit order, or has ended.
    func placed() async throws {
        await last?.wait()
    }

    /// Waits until every answer is written.
    mutating func drain() async throws {
        guard let input, let writer else { return }
        input.finish()
        self.input = nil
        self.writer = nil
        started.removeAll()
        try await writer.value
    }

    /// On an error the writer stops with the connection.
    func abandon() {
        input?.finish()
        writer?.cancel()
    }
}

/// Signalled once: when an early request's append is placed in the commit order, or when the
/// request ends without one.
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
