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
/// Every frame carries `id: <event id>`, so an EventSource that reconnects with
/// `Last-Event-ID` resumes exactly after the last event it saw.
enum EventStream {
    /// CelestialTree's `/subscribe`: a `hello` frame, then `event: emit` frames from the current
    /// end of the log (or after `Last-Event-ID` when the client sends one).
    static func celestialTree(_ request: Request, store: EventStore, subscribers: SubscriberCount, config: ServerConfiguration) -> Response {
        guard subscribers.acquire(max: config.streamsMax) else {
            var error = APIError(.serviceUnavailable, "too many streams", detail: "\(config.streamsMax) streams are open (streamsMax)")
            error.headers[.retryAfter] = "5"
            return error.makeResponse()
        }
        let resume = request.headers[.lastEventID].flatMap { UInt64($0) }
        let start = min(resume ?? store.lastID, store.lastID)
        let body = ResponseBody { writer in
            defer { subscribers.release() }
            try await writer.write(ByteBuffer(string: "event: hello\ndata: {\"message\":\"subscribed\"}\n\n"))
            let stopping = Atomic(false)
            try await withGracefulShutdownHandler {
                try await pump(from: start, store: store, config: config, stopping: stopping, writer: &writer)
            } onGracefulShutdown: {
                stopping.store(true, ordering: .relaxed)
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache", .connection: "keep-alive"],
            body: body)
    }

    /// Writes every committed event after `cursor`, in order, until the client goes away or the
    /// server shuts down (checked at least once a second, so shutdown never waits on a stream).
    static func pump(
        from cursor: EventID, store: EventStore, config: ServerConfiguration, stopping: borrowing Atomic<Bool>,
        writer: inout any ResponseBodyWriter
    ) async throws {
        var cursor = cursor
        var lastWrite = ContinuousClock.now
        while !Task.isCancelled && !stopping.load(ordering: .relaxed) {
            let after = cursor
            let page = try await Blocking.run { try store.events(after: after, limit: config.streamReadEventsMax) }
            if let last = page.last {
                var w = JSONWriter(capacity: page.count * 200)
                for event in page {
                    w.writeRaw("id: ")
                    w.writeUInt(event.id)
                    w.writeRaw("\nevent: emit\ndata: ")
                    EventJSON.write(event, into: &w)
                    w.writeRaw("\n\n")
                }
                try await writer.write(ByteBuffer(bytes: w.bytes))
                lastWrite = .now
                cursor = last.id
                continue
            }
            _ = await store.notifier.wait(after: cursor, timeout: min(config.streamHeartbeat, .seconds(1)))
            if ContinuousClock.now - lastWrite >= config.streamHeartbeat {
                try await writer.write(ByteBuffer(string: ": keepalive\n\n"))
                lastWrite = .now
            }
        }
    }
}

extension HTTPField.Name {
    static let lastEventID = Self("Last-Event-ID")!
}
