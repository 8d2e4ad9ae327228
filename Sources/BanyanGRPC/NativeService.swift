import BanyanServer
import EventLog
import Foundation
import GRPCCore
import Synchronization

/// The native `banyan.v1.Banyan` service: the native HTTP API's operations (`NativeAPI`,
/// `QueryAPI`, `EventStream`, `Writes`) with their checks, limits and errors, in protobuf
/// messages. Payloads travel as JSON text (`payload_json`): exact numbers, stored
/// as compact JSON (`null`: none).
struct NativeService: Banyan_V1_Banyan.ServiceProtocol {
    typealias Methods = Banyan_V1_Banyan.Method
    let server: BanyanServer
    /// Set when the server shuts down: open streams end within a second.
    let stopping: StopFlag
    let call: GRPCCall
    let native: NativeAPI
    var store: EventStore { server.store }

    /// Built once: a call should not rebuild the server's operations on the hot path.
    init(server: BanyanServer, stopping: StopFlag) {
        self.server = server
        self.stopping = stopping
        call = GRPCCall(server: server)
        native = server.native
    }

    func append(request: ServerRequest<Banyan_V1_AppendRequest>, context: ServerContext) async throws -> ServerResponse<Banyan_V1_AppendResponse> {
        let m = request.message
        let outcome = try await call.run(Methods.Append.descriptor, role: .write, metadata: request.metadata) {
            let durability: Durability?
            switch m.durability {
            case .server: durability = nil
            case .sync: durability = .group
            case .async: durability = .never
            case .UNRECOGNIZED(let n): throw APIError.invalid("durability must be DURABILITY_SERVER, DURABILITY_SYNC or DURABILITY_ASYNC, not \(n)", field: "durability")
            }
            let replicas = try ReplicationState.replicasWanted(requested: Int(m.replicas), config: server.config)
            let requests: [AppendRequest]
            do {
                requests = try AppendRequest.checkedBatch(m.events.count, limits: store.limits) { i in
                    let e = m.events[i]
                    return (
                        e.type, e.parents, e.parentKeys, e.hasKey ? e.key : nil, e.hasStream ? e.stream : nil, e.hasMessage ? e.message : nil,
                        e.hasPayloadJson ? [UInt8](e.payloadJson) : nil
                    )
                }
            } catch let error as AppendBatchError {
                throw BatchDecoder.apiError(error)
            }
            return try await native.writes.append(requests, durability: durability, replicas: replicas, redirecting: nil)
        }
        var response = Banyan_V1_AppendResponse()
        response.results = outcome.receipt.results.map { result in
            var r = Banyan_V1_AppendResult()
            r.id = result.id
            r.duplicate = result.duplicate
            return r
        }
        response.durable = outcome.receipt.durable
        if let confirmed = outcome.replicas { response.replicas = UInt32(confirmed) }
        return ServerResponse(message: response)
    }

    func get(request: ServerRequest<Banyan_V1_GetRequest>, context: ServerContext) async throws -> ServerResponse<Banyan_V1_Event> {
        let m = request.message
        let event = try await call.run(Methods.Get.descriptor, role: .read, metadata: request.metadata) {
            try await readYourWrites(m.minID)
            switch m.by {
            case .id(let id)?:
                guard id > 0 else { throw APIError.invalid("id must be an event id, 1 or more", field: "id") }
                return try native.event(id: id)
            case .key(let key)?:
                return try native.event(key: key)
            case nil:
                throw APIError.invalid("name the event by id or by key", field: "by")
            }
        }
        return ServerResponse(message: Self.message(event))
    }

    func query(request: ServerRequest<Banyan_V1_QueryRequest>, context: ServerContext) async throws -> StreamingServerResponse<Banyan_V1_QueryPage> {
        let m = request.message
        let call = self.call
        return StreamingServerResponse { writer in
            try await call.run(Methods.Query.descriptor, role: .read, metadata: request.metadata) {
                let limits = store.limits
                guard m.query.utf8.count <= limits.queryBodyBytesMax else {
                    throw APIError(.contentTooLarge, "query too large", detail: "the query is \(m.query.utf8.count) bytes, more than \(limits.queryBodyBytesMax)").naming("query")
                }
                var ask = try QueryAPI.Ask(
                    text: m.query, pageSize: m.pageSize == 0 ? nil : Int(m.pageSize), nodesMax: m.nodesMax == 0 ? nil : Int(clamping: m.nodesMax),
                    timeMaxMs: m.timeMaxMs == 0 ? nil : Int(clamping: m.timeMaxMs), include: m.include, cursor: nil, limits: limits)
                try await readYourWrites(m.minID)
                let api = native.query
                // Page after page until the answer ends: each page is bounded as over HTTP, and
                // the answer is kept between pages (QueryAnswers), so the query runs once.
                repeat {
                    let (body, next) = try await api.page(ask)
                    var page = Banyan_V1_QueryPage()
                    page.pageJson = Data(body.bytes)
                    try await writer.write(page)
                    ask.cursor = next
                } while ask.cursor != nil
            }
            return [:]
        }
    }

    func stream(request: ServerRequest<Banyan_V1_StreamRequest>, context: ServerContext) async throws -> StreamingServerResponse<Banyan_V1_StreamItem> {
        let m = request.message
        let (call, store, server, stopping) = (self.call, self.store, self.server, self.stopping)
        return StreamingServerResponse { writer in
            try await call.run(Methods.Stream.descriptor, role: .read, metadata: request.metadata) {
                let filter = LogFilter(
                    type: try NativeAPI.nonEmpty(m.hasType ? m.type : nil, field: "type"),
                    stream: try NativeAPI.nonEmpty(m.hasStream ? m.stream : nil, field: "stream"))
                let start = m.fromEnd ? store.lastID : m.after
                try await EventStream.serve(
                    from: start, filter: filter, store: store, streams: server.streams, config: server.config, stopping: stopping.flag,
                    isGone: { context.cancellation.isCancelled }
                ) { _, delivery in
                    switch delivery {
                    case .events(let events):
                        for event in events {
                            var item = Banyan_V1_StreamItem()
                            item.event = Self.message(event)
                            try await writer.write(item)
                        }
                    case .truncated(let cut):
                        var item = Banyan_V1_StreamItem()
                        item.truncatedAfter = cut
                        try await writer.write(item)
                    case .pruned(let after, let firstID, let detail):
                        // The HTTP stream's pruned frame; here the call ends with OUT_OF_RANGE.
                        var error = APIError(.gone, "pruned", detail: detail).naming("after")
                        error.members = [("after", .int(after)), ("first_id", .int(firstID))]
                        throw error
                    case .heartbeat:
                        // HTTP/2 keepalive does this job for gRPC.
                        break
                    }
                }
                if stopping.flag.load(ordering: .relaxed) {
                    // Not OK, which would read as "the stream is complete": reconnect with `after`.
                    var error = APIError(.serviceUnavailable, "shutting down", detail: "the server is stopping; resume elsewhere or later with after")
                    error.headers[.retryAfter] = "1"
                    throw error
                }
            }
            return [:]
        }
    }

    func status(request: ServerRequest<Banyan_V1_StatusRequest>, context: ServerContext) async throws -> ServerResponse<Banyan_V1_StatusResponse> {
        let json = try await call.run(Methods.Status.descriptor, role: .read, metadata: request.metadata) { try await native.status() }
        var response = Banyan_V1_StatusResponse()
        response.role = json["role"]?.stringValue ?? ""
        response.epoch = json["epoch"]?.uint64Value ?? 0
        response.leader = json["leader"]?.stringValue ?? ""
        response.lastID = json["last_id"]?.uint64Value ?? 0
        response.firstID = json["first_id"]?.uint64Value ?? 0
        response.statusJson = Data(json.serialized())
        return ServerResponse(message: response)
    }

    /// Read-your-writes, as `min_id` on HTTP reads (0: none).
    private func readYourWrites(_ minID: UInt64) async throws {
        try await ReadGate.wait(minID: minID == 0 ? nil : minID, store: store, bound: server.config.readWait)
    }

    static func message(_ event: Event) -> Banyan_V1_Event {
        var m = Banyan_V1_Event()
        m.id = event.id
        m.timeUnixNano = event.timeUnixNano
        m.type = event.type
        m.parents = event.parents
        if let key = event.key { m.key = key }
        if let stream = event.stream { m.stream = stream }
        if let message = event.message { m.message = message }
        if let payload = event.payload { m.payloadJson = Data(payload) }
        m.compacted = event.compaction != nil
        return m
    }
}

/// Set once at shutdown; streams read it at least once a second.
final class StopFlag: Sendable {
    let flag = Atomic(false)
}
