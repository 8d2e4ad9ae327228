import EventLog
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle
import Synchronization

/// Server-sent event streams fed from the log, not from an in-memory fan-out: each stream
/// keeps a cursor, reads committed events after it from storage, and waits on the commit
/// notifier when caught up. A slow reader simply falls behind and catches up later; it never
/// loses an event and never makes the writer wait.
///
/// Every event frame carries `id: <event id>`, so an EventSource that reconnects with
/// `Last-Event-ID` resumes exactly after the last event it saw.
enum EventStream {
    struct Format: Sendable {
        /// Sent once when the stream opens (CelestialTree's hello frame).
        var greeting: String?
        /// The SSE `event:` name of event frames.
        var eventName: StaticString
        /// The members of each event (CelestialTree's `/subscribe` keeps its shape).
        var fields: EventJSON.Fields = .all
    }

    /// CelestialTree's `/subscribe`: a `hello` frame, then `event: emit` frames from the end of
    /// the log (or after `Last-Event-ID` when the client sends one).
    static func celestialTree(_ request: Request, store: EventStore, streams: StreamRegistry, config: ServerConfiguration, client: ClientConnection) throws -> Response {
        let start = try resumeID(request) ?? store.lastID
        let format = Format(greeting: "event: hello\ndata: {\"message\":\"subscribed\"}\n\n", eventName: "emit", fields: .celestialTree)
        return try open(from: start, filter: LogFilter(), format: format, store: store, streams: streams, config: config, client: client)
    }

    /// `/v1/stream?after=ID&type=&stream=`: every matching event after `after` (default: the end of
    /// the log; `Last-Event-ID` wins), then live.
    static func native(_ request: Request, store: EventStore, streams: StreamRegistry, config: ServerConfiguration, client: ClientConnection) throws -> Response {
        let query = try QueryString(request)
        let filter = LogFilter(
            type: try NativeAPI.nonEmpty(query.get("type"), field: "type"), stream: try NativeAPI.nonEmpty(query.get("stream"), field: "stream"))
        let start = try resumeID(request) ?? NativeAPI.id(query.get("after"), field: "after") ?? store.lastID
        return try open(from: start, filter: filter, format: Format(greeting: nil, eventName: "event"), store: store, streams: streams, config: config, client: client)
    }

    private static func resumeID(_ request: Request) throws -> EventID? {
        try NativeAPI.id(request.headers[.lastEventID], field: "Last-Event-ID")
    }

    private static func open(
        from start: EventID, filter: LogFilter, format: Format, store: EventStore, streams: StreamRegistry, config: ServerConfiguration,
        client: ClientConnection
    ) throws -> Response {
        // A resume point below a pruned prefix would skip events: 410 before the stream starts.
        try store.checkNotPruned(after: start)
        guard let token = streams.open(at: start, max: store.limits.streamsMax) else {
            var error = APIError(.serviceUnavailable, "too many streams", detail: "\(store.limits.streamsMax) streams are open (--streams-max)")
            error.headers[.retryAfter] = "5"
            throw error
        }
        let body = ResponseBody { writer in
            defer { streams.close(token) }
            if let greeting = format.greeting { try await writer.write(ByteBuffer(string: greeting)) }
            let stopping = Atomic(false)
            try await withGracefulShutdownHandler {
                try await pump(from: start, filter: filter, format: format, store: store, config: config, stopping: stopping, isGone: { client.isGone }) { cursor, bytes in
                    if let bytes { try await writer.write(ByteBuffer(bytes: bytes)) }
                    streams.advance(token, to: cursor)
                }
            } onGracefulShutdown: {
                stopping.store(true, ordering: .relaxed)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    static let headers: HTTPFields = [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache", .connection: "keep-alive"]

    /// The answer to HEAD on a stream route: its headers, no stream opened.
    static var headOnlyResponse: Response { Response(status: .ok, headers: headers) }

    /// Emits frames for every matching committed event after `cursor`, in order, until the client
    /// goes away (`isGone`: its connection closed or half-closed, as `HTTPGuardHandler` notes) or
    /// the server shuts down, both checked at least once a second, so
    /// neither a gone client's slot nor shutdown waits for a heartbeat. `emit` gets the new
    /// cursor and the bytes to write (nil: nothing to send).
    static func pump(
        from cursor: EventID, filter: LogFilter, format: Format, store: EventStore, config: ServerConfiguration,
        stopping: borrowing Atomic<Bool>, isGone: @Sendable () -> Bool = { false }, emit: (EventID, [UInt8]?) async throws -> Void
    ) async throws {
        var cursor = cursor
        var lastWrite = ContinuousClock.now
        var truncationsSeen = store.truncation(since: 0).count
        while !Task.isCancelled && !stopping.load(ordering: .relaxed) && !isGone() {
            let truncation = store.truncation(since: truncationsSeen)
            truncationsSeen = truncation.count
            if let cut = truncation.cut, cut < cursor {
                // This node dropped events the reader already has (a tail its new leader never
                // had, docs/REPLICATION.md). Say so, and continue after the cut: the ids that
                // follow will hold the new leader's events. `id:` moves the reader's
                // Last-Event-ID back, so a reconnect resumes there too.
                try await emit(cut, truncatedFrame(after: cut))
                cursor = cut
                lastWrite = .now
            }
            let after = cursor
            let page: LogPage
            do {
                page = try await Blocking.run { try store.page(after: after, limit: store.limits.streamReadEventsMax, filter: filter) }
            } catch let error as LogError where error.code == .pruned {
                // A prune passed this slow reader: the events it has not read are gone here. Say
                // so and end; a reconnect from the same id gets 410 with the same words.
                try await emit(cursor, prunedFrame(after: cursor, firstID: store.firstID, detail: error.message))
                return
            }
            if page.next > cursor {
                var w = JSONWriter(capacity: page.events.count * 200)
                for event in page.events {
                    w.writeRaw("id: ")
                    w.writeUInt(event.id)
                    w.writeRaw("\nevent: ")
                    w.writeRaw(format.eventName)
                    w.writeRaw("\ndata: ")
                    EventJSON.write(event, fields: format.fields, into: &w)
                    w.writeRaw("\n\n")
                }
                try await emit(page.next, page.events.isEmpty ? nil : w.bytes)
                if !page.events.isEmpty { lastWrite = .now }
                cursor = page.next
                continue
            }
            _ = await store.notifier.wait(after: cursor, timeout: min(config.streamHeartbeat, .seconds(1)))
            if ContinuousClock.now - lastWrite >= config.streamHeartbeat {
                try await emit(cursor, Array(": heartbeat\n\n".utf8))
                lastWrite = .now
            }
        }
    }
}

extension EventStream {
    /// `id: N`, `event: truncated`, `data: {"after":N}`: every event after N this stream sent is
    /// void.
    static func truncatedFrame(after cut: EventID) -> [UInt8] {
        Array("id: \(cut)\nevent: truncated\ndata: {\"after\":\(cut)}\n\n".utf8)
    }
}

extension EventStream {
    /// `event: pruned`, `data: {"after":N,"first_id":F,"detail":...}`: the events after N that
    /// this stream has not sent were pruned; the stream ends.
    static func prunedFrame(after cursor: EventID, firstID: EventID, detail: String) -> [UInt8] {
        var w = JSONWriter()
        w.write(.members(["after": .int(cursor), "first_id": .int(firstID), "detail": .string(detail)]))
        return Array("event: pruned\ndata: ".utf8) + w.bytes + Array("\n\n".utf8)
    }
}

extension HTTPField.Name {
    public static let lastEventID = Self.known("Last-Event-ID")
}
