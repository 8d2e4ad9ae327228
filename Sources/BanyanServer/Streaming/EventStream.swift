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
package enum EventStream {
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
        let token = try reserve(from: start, store: store, streams: streams)
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

    /// A stream's slot under `--streams-max`, checked before the stream starts: a resume point
    /// below a pruned prefix would skip events (410), and a full registry answers 503.
    static func reserve(from start: EventID, store: EventStore, streams: StreamRegistry) throws -> UInt64 {
        try store.checkNotPruned(after: start)
        guard let token = streams.open(at: start, max: store.limits.streamsMax) else {
            var error = APIError(.serviceUnavailable, "too many streams", detail: "\(store.limits.streamsMax) streams are open (--streams-max)")
            error.headers[.retryAfter] = "5"
            throw error
        }
        return token
    }

    /// A stream for another transport (gRPC `Stream`): its slot, then `follow` until the reader
    /// goes (`isGone`), the task is cancelled or `stopping` is set.
    package static func serve(
        from start: EventID, filter: LogFilter, store: EventStore, streams: StreamRegistry, config: ServerConfiguration,
        stopping: borrowing Atomic<Bool>, isGone: @Sendable () -> Bool, emit: (EventID, Delivery) async throws -> Void
    ) async throws {
        let token = try reserve(from: start, store: store, streams: streams)
        defer { streams.close(token) }
        try await follow(from: start, filter: filter, store: store, config: config, stopping: stopping, isGone: isGone) { cursor, delivery in
            try await emit(cursor, delivery)
            streams.advance(token, to: cursor)
        }
    }

    static let headers: HTTPFields = [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache", .connection: "keep-alive"]

    /// The answer to HEAD on a stream route: its headers, no stream opened.
    static var headOnlyResponse: Response { Response(status: .ok, headers: headers) }

    /// Emits frames for every matching committed event after `cursor` (`follow`, in SSE
    /// frames). `emit` gets the new cursor and the bytes to write (nil: nothing to send).
    static func pump(
        from cursor: EventID, filter: LogFilter, format: Format, store: EventStore, config: ServerConfiguration,
        stopping: borrowing Atomic<Bool>, isGone: @Sendable () -> Bool = { false }, emit: (EventID, [UInt8]?) async throws -> Void
    ) async throws {
        try await follow(from: cursor, filter: filter, store: store, config: config, stopping: stopping, isGone: isGone) { cursor, delivery in
            try await emit(cursor, frames(delivery, format: format))
        }
    }

    /// What a stream hands its reader, whatever the transport (SSE frames, gRPC messages).
    package enum Delivery {
        /// The next matching events (perhaps none: the cursor moved past events the filter skipped).
        case events([Event])
        /// This node dropped events the reader already has (a tail its new leader never had,
        /// docs/REPLICATION.md): every event after `after` sent so far is void, and the ids that
        /// follow hold the new leader's events.
        case truncated(after: EventID)
        /// A prune passed this slow reader: the events it has not read are gone here. The stream ends.
        case pruned(after: EventID, firstID: EventID, detail: String)
        /// Nothing for `--stream-heartbeat-seconds`.
        case heartbeat
    }

    /// The SSE bytes of one delivery.
    static func frames(_ delivery: Delivery, format: Format) -> [UInt8]? {
        switch delivery {
        case .events(let events):
            guard !events.isEmpty else { return nil }
            var w = JSONWriter(capacity: events.count * 200)
            for event in events {
                w.writeRaw("id: ")
                w.writeUInt(event.id)
                w.writeRaw("\nevent: ")
                w.writeRaw(format.eventName)
                w.writeRaw("\ndata: ")
                EventJSON.write(event, fields: format.fields, into: &w)
                w.writeRaw("\n\n")
            }
            return w.bytes
        case .truncated(let cut): return truncatedFrame(after: cut)
        case .pruned(let after, let firstID, let detail): return prunedFrame(after: after, firstID: firstID, detail: detail)
        case .heartbeat: return Array(": heartbeat\n\n".utf8)
        }
    }

    /// Hands over every matching committed event after `cursor`, in order, until the client
    /// goes away (`isGone`: its connection closed or half-closed, as `HTTPGuardHandler` notes),
    /// the task is cancelled or the server shuts down, all checked at least once a second, so
    /// neither a gone client's slot nor shutdown waits for a heartbeat. `emit` gets the new
    /// cursor and what to deliver; the stream ends after `.pruned`.
    package static func follow(
        from cursor: EventID, filter: LogFilter, store: EventStore, config: ServerConfiguration,
        stopping: borrowing Atomic<Bool>, isGone: @Sendable () -> Bool = { false }, emit: (EventID, Delivery) async throws -> Void
    ) async throws {
        var cursor = cursor
        var lastWrite = ContinuousClock.now
        var truncationsSeen = store.truncation(since: 0).count
        while !Task.isCancelled && !stopping.load(ordering: .relaxed) && !isGone() {
            let truncation = store.truncation(since: truncationsSeen)
            truncationsSeen = truncation.count
            if let cut = truncation.cut, cut < cursor {
                // Say so, and continue after the cut: the ids that follow will hold the new
                // leader's events. SSE's `id:` moves the reader's Last-Event-ID back, so a
                // reconnect resumes there too.
                try await emit(cut, .truncated(after: cut))
                cursor = cut
                lastWrite = .now
            }
            let after = cursor
            let page: LogPage
            do {
                page = try await Blocking.run { try store.page(after: after, limit: store.limits.streamReadEventsMax, filter: filter) }
            } catch let error as LogError where error.code == .pruned {
                // A reconnect from the same id gets 410 with the same words.
                try await emit(cursor, .pruned(after: cursor, firstID: store.firstID, detail: error.message))
                return
            }
            if page.next > cursor {
                try await emit(page.next, .events(page.events))
                if !page.events.isEmpty { lastWrite = .now }
                cursor = page.next
                continue
            }
            _ = await store.notifier.wait(after: cursor, timeout: min(config.streamHeartbeat, .seconds(1)))
            if ContinuousClock.now - lastWrite >= config.streamHeartbeat {
                try await emit(cursor, .heartbeat)
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
