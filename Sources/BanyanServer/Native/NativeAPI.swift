import EventLog
import Foundation
import Hummingbird
import NIOCore
import LineageQuery

/// The native API under `/v1` (docs/HTTP_API.md): batch append, log reads, the SSE stream, status.
public struct NativeAPI: Sendable {
    let store: EventStore
    let config: ServerConfiguration
    let streams: StreamRegistry
    let replication: ReplicationState
    var cluster: ClusterMember? = nil
    let queryAnswers: QueryAnswers

    package var writes: Writes { Writes(store: store, replication: replication, config: config) }
    package var query: QueryAPI { QueryAPI(store: store, config: config, answers: queryAnswers) }

    /// The routes under `/v1` (`RouteTable`).
    var routes: [Route] {
        [
            Route(.post, "/v1/events", role: .write) { request, _ in try await append(request) },
            Route(.get, "/v1/events", role: .read) { request, _ in try await readLog(request) },
            Route(.get, "/v1/events/{id}", role: .read) { _, route in try event(try Self.pathID(route.parameter)) },
            Route(.get, "/v1/events/by-key/{key}", role: .read) { _, route in try event(key: route.parameter) },
            Route(.get, "/v1/stream", role: .read) { request, route in
                route.headOnly
                    ? EventStream.headOnlyResponse
                    : try EventStream.native(request, store: store, streams: streams, config: config, client: route.client)
            },
            Route(.post, "/v1/query", role: .read) { request, _ in try await query.run(request) },
            Route(.get, "/v1/status", role: .read) { _, _ in JSONResponse.make(try await status()) },
        ]
    }

    private func event(key raw: Substring) throws -> Response {
        guard let key = String(raw).removingPercentEncoding else { throw APIError.invalid("the key is not valid percent-encoded UTF-8", field: "key") }
        return JSONResponse.make(EventJSON.encode(try event(key: key)))
    }

    package func event(key: String) throws -> Event {
        guard !key.isEmpty else { throw APIError.invalid("the key must not be empty", field: "key") }
        guard let event = try store.event(key: key) else { throw APIError(.notFound, "not found", detail: "no event has key \"\(key)\"").naming("key") }
        return event
    }

    private func append(_ request: Request) async throws -> Response {
        try replication.requireLeader(for: request)
        let ndjson = try RequestBody.requireJSON(request, also: ["application/x-ndjson"]) == "application/x-ndjson"
        let query = try QueryString(request)
        let durability = try Self.durability(query.get("durability"))
        let replicas = try ReplicationState.replicasWanted(query.get("replicas"), config: config)
        let body: [UInt8]
        do {
            body = try await RequestBody.bytes(request, bytesMax: store.limits.appendBodyBytesMax)
        } catch let error as APIError {
            throw error.naming("body")
        }
        let requests = try BatchDecoder.decode(body, ndjson: ndjson, limits: store.limits)
        let outcome = try await writes.append(requests, durability: durability, replicas: replicas, redirecting: request.uri.description)
        let (receipt, confirmed) = (outcome.receipt, outcome.replicas)
        var w = JSONWriter(capacity: 48 + receipt.results.count * 16)
        w.writeRaw("{\"results\":[")
        for (i, result) in receipt.results.enumerated() {
            w.writeRaw(i == 0 ? "{\"id\":" : ",{\"id\":")
            w.writeUInt(result.id)
            w.writeRaw(result.duplicate ? ",\"duplicate\":true}" : "}")
        }
        w.writeRaw("],\"durable\":")
        w.writeBool(receipt.durable)
        if let confirmed {
            w.writeRaw(",\"replicas\":")
            w.writeUInt(UInt64(confirmed))
        }
        w.writeRaw("}")
        return JSONResponse.make(w)
    }

    /// `sync` waits for fsync; `async` answers once the batch is in the WAL; absent: server policy.
    static func durability(_ raw: String?) throws -> Durability? {
        switch raw {
        case nil: return nil
        case "sync": return .group
        case "async": return .never
        case let other?: throw APIError.invalid("durability must be sync or async, not \"\(other)\"", field: "durability")
        }
    }

    private func event(_ id: EventID) throws -> Response {
        JSONResponse.make(EventJSON.encode(try event(id: id)))
    }

    package func event(id: EventID) throws -> Event {
        guard let event = try store.event(id) else { throw APIError(.notFound, "not found", detail: "event \(id) does not exist").naming("id") }
        return event
    }

    private func readLog(_ request: Request) async throws -> Response {
        let query = try QueryString(request)
        let after = try Self.id(query.get("after"), field: "after") ?? 0
        let limit = try Self.integer(query.get("limit"), field: "limit") ?? 100
        guard limit >= 1, limit <= store.limits.readEventsMax else {
            throw APIError.invalid("limit must be 1...\(store.limits.readEventsMax), not \(limit)", field: "limit")
        }
        let filter = try Self.filter(query)
        let store = self.store
        let page = try await Blocking.run { try store.page(after: after, limit: limit, filter: filter) }
        var w = JSONWriter(capacity: 64 + page.events.count * 200)
        w.writeRaw("{\"events\":[")
        for (i, event) in page.events.enumerated() {
            if i > 0 { w.writeRaw(",") }
            EventJSON.write(event, into: &w)
        }
        w.writeRaw("],\"next\":")
        w.writeUInt(page.next)
        w.writeRaw(",\"last_id\":")
        w.writeUInt(page.lastID)
        w.writeRaw("}")
        return JSONResponse.make(w)
    }

    package func status() async throws -> JSONValue {
        let store = self.store
        let stats = try await Blocking.run { try store.stats() }
        let uptime = ContinuousClock.now - store.startedAt
        let members: KeyValuePairs<String, JSONValue> = [
            "role": .string(replication.role.rawValue), "epoch": .int(stats.epoch), "leader": replication.leader.map(JSONValue.string) ?? .null,
            "last_id": .int(stats.events), "first_id": .int(store.firstID),
            "pruned": store.pruned.map { pruned in
                .members([
                    "first_id": .int(pruned.firstID),
                    "archives": .array(pruned.archives.map { .members(["first_id": .int($0.firstID), "name": .string($0.name)]) }),
                ])
            } ?? .null,
            "edges": .int(stats.edges), "roots": .int(stats.roots), "heads": .int(stats.heads),
            "segments": .members(["sealed": .int(stats.sealedSegments), "events_max": .int(store.limits.segmentEventsMax)]),
            "disk_bytes": .int(stats.diskBytes), "durability": .string(store.options.durability.rawValue),
            "uptime_seconds": Self.seconds(uptime), "streams": .int(streams.count), "version": .string(BanyanVersion.version),
            "cluster": cluster?.status ?? .null,
        ]
        let all = members.map { JSONMember(key: $0.key, value: $0.value) } + replication.statusMembers(lastID: stats.events)
        return JSONValue.object(all)
    }

    /// Seconds with millisecond precision, as JSON.
    static func seconds(_ d: Duration) -> JSONValue {
        .number(String(format: "%.3f", max(0, d.inSeconds)))
    }

    // MARK: parameters

    static func pathID(_ text: Substring) throws -> EventID {
        do { return try PathID.parse(text) } catch let error as APIError {
            throw APIError.invalid("the event id must be an integer 1...18446744073709551615, not \"\(text)\"", field: "id", error: error.error)
        }
    }


    static func filter(_ query: QueryString) throws -> LogFilter {
        LogFilter(
            type: try nonEmpty(query.get("type"), field: "type"), stream: try nonEmpty(query.get("stream"), field: "stream"),
            since: try time(query.get("since"), field: "since"), until: try time(query.get("until"), field: "until"))
    }

    package static func nonEmpty(_ raw: String?, field: String) throws -> String? {
        guard let raw else { return nil }
        guard !raw.isEmpty else { throw APIError.invalid("\(field) must not be empty", field: field) }
        return raw
    }

    public static func id(_ raw: String?, field: String) throws -> EventID? {
        guard let raw else { return nil }
        guard raw.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), raw == "0" || raw.first != "0", let value = UInt64(raw) else {
            throw APIError.invalid("\(field) must be an event id (a non-negative integer without leading zeros), not \"\(raw)\"", field: field)
        }
        return value
    }

    public static func integer(_ raw: String?, field: String) throws -> Int? {
        guard let raw else { return nil }
        guard let value = Int(raw) else { throw APIError.invalid("\(field) must be an integer, not \"\(raw)\"", field: field) }
        return value
    }

    /// RFC 3339 (`2026-01-01T00:00:00Z`, fractions allowed) or integer Unix nanoseconds.
    public static func time(_ raw: String?, field: String) throws -> Int64? {
        guard let raw else { return nil }
        if let nanos = Int64(raw) { return nanos }
        guard let nanos = TimeLiteral.nanoseconds(raw) else {
            throw APIError.invalid(
                "\(field) must be RFC 3339 (2026-01-01T00:00:00Z) between 1677-09-22 and 2262-04-11, or Unix nanoseconds, not \"\(raw)\"",
                field: field)
        }
        return nanos
    }
}
