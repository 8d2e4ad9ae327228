import EventLog
import Foundation
import Hummingbird
import NIOCore

/// The CelestialTree-compatible routes, with the paths, JSON shapes and status codes the
/// `celestialtree` Python client depends on (see docs/HTTP_API.md). Where Banyan is stricter
/// (dense ids, node limits) the shapes stay the same.
struct CelestialTreeAPI: Sendable {
    let store: EventStore
    let config: ServerConfiguration
    let streams: StreamRegistry
    let replication: ReplicationState
    let treeMeta: TreeMetaCache

    var writes: Writes { Writes(store: store, replication: replication, config: config) }

    /// CelestialTree's routes (`RouteTable`). `/healthz` and `/version` answer any method, as
    /// CelestialTree's do; `/healthz` needs no token.
    var routes: [Route] {
        [
            Route(nil, "/healthz", role: nil) { _, _ in health() },
            Route(nil, "/version", role: .read) { _, _ in version() },
            Route(.post, "/emit", role: .write) { request, _ in
                try RequestBody.requireJSON(request)
                return try await emit(request)
            },
            Route(.get, "/event/{id}", role: .read) { _, route in try await event(try PathID.parse(route.parameter)) },
            Route(.get, "/children/{id}", role: .read) { _, route in try await children(try PathID.parse(route.parameter)) },
            Route(.get, "/ancestors/{id}", role: .read) { _, route in try await reachableRoots(try PathID.parse(route.parameter)) },
            Route(.get, "/descendants/{id}", role: .read) { request, route in try await tree(request, route, .descendants) },
            Route(.get, "/provenance/{id}", role: .read) { request, route in try await tree(request, route, .provenance) },
            // Tree batches are reads sent as POST (CelestialTree's API).
            Route(.post, "/descendants", role: .read) { request, _ in
                try RequestBody.requireJSON(request)
                return try await treesBatch(request, .descendants)
            },
            Route(.post, "/provenance", role: .read) { request, _ in
                try RequestBody.requireJSON(request)
                return try await treesBatch(request, .provenance)
            },
            Route(.get, "/roots", role: .read) { _, _ in try await list { try store.roots() } },
            Route(.get, "/heads", role: .read) { _, _ in try await list { try store.heads() } },
            Route(.get, "/snapshot", role: .read) { _, _ in try await snapshot() },
            Route(.get, "/subscribe", role: .read) { request, route in
                route.headOnly
                    ? EventStream.headOnlyResponse
                    : try EventStream.celestialTree(request, store: store, streams: streams, config: config, client: route.client)
            },
        ]
    }

    private func tree(_ request: Request, _ route: RouteContext, _ direction: TreeEncoder.Direction) async throws -> Response {
        let view = try Self.view(try QueryString(request).get("view"))
        return try await trees([try PathID.parse(route.parameter)], direction, view, batch: false)
    }

    private func health() -> Response {
        JSONResponse.make(JSONValue.members(["ok": .bool(true), "ts": .int(Int64(Date().timeIntervalSince1970))]))
    }

    private func version() -> Response {
        // Go marshals maps with sorted keys; keep that order.
        JSONResponse.make(JSONValue.members([
            "build": .string(BanyanVersion.build), "commit": .string(BanyanVersion.commit),
            "name": .string("Banyan"), "version": .string(BanyanVersion.version),
        ]))
    }

    private static let emitFields: Set<String> = ["type", "parents", "message", "payload"]

    private func emit(_ request: Request) async throws -> Response {
        try replication.requireLeader(for: request)
        let body = try await RequestBody.bytes(request, bytesMax: store.limits.eventBodyBytesMax)
        let id = try await writes.emit(try Self.emitRequest(body, limits: store.limits), redirecting: request.uri.description)
        return JSONResponse.make(Self.emitAnswer(id))
    }

    /// An `/emit` body as the event it asks for (also read on the event loop: `FastEmit`).
    static func emitRequest(_ body: [UInt8], limits: Limits) throws -> AppendRequest {
        let object = try RequestBody.object(body, allowed: emitFields, depthMax: limits.jsonDepthMax)
        let type = try RequestBody.string(object, "type")
        guard let type, !type.isEmpty else { throw APIError(.badRequest, "emit failed", detail: "type is required") }
        let parents = try RequestBody.ids(object, "parents", countMax: limits.parentsPerEventMax) ?? []
        let message = try RequestBody.string(object, "message")
        let payload = object["payload"].flatMap { $0.isNull ? nil : $0 }
        return AppendRequest(type: type, parents: parents, message: message, payload: payload)
    }

    /// `{"id":N}`, without the newline `JSONResponse` adds.
    static func emitAnswer(_ id: EventID) -> JSONWriter {
        var w = JSONWriter()
        w.writeRaw("{\"id\":")
        w.writeUInt(id)
        w.writeRaw("}")
        return w
    }

    private func event(_ id: EventID) async throws -> Response {
        // A point read is a few microseconds against the block cache: a thread hop would cost more.
        guard let event = try store.event(id) else { throw APIError.notFound }
        return JSONResponse.make(EventJSON.encode(event, fields: .celestialTree))
    }

    private func children(_ id: EventID) async throws -> Response {
        try await list { [store] in
            guard let ids = try store.children(of: id) else { throw APIError.notFound }
            return ids
        }
    }

    private func reachableRoots(_ id: EventID) async throws -> Response {
        try await list(heavy: true) { [store] in
            guard let ids = try store.reachableRoots(of: id) else { throw APIError.notFound }
            return ids
        }
    }

    private func list(heavy: Bool = false, _ body: @escaping @Sendable () throws -> [EventID]) async throws -> Response {
        do {
            return JSONResponse.ids(try await heavy ? Blocking.runHeavy(body) : Blocking.run(body))
        } catch let error as LogError {
            throw APIError.from(error, summary: "too many results")
        }
    }

    private func snapshot() async throws -> Response {
        let store = self.store
        let stats = try await Blocking.run { try store.stats() }
        // Sorted keys, as Go's map marshalling writes them.
        return JSONResponse.make(JSONValue.members([
            "edges": .int(stats.edges), "events": .int(stats.events), "goroutines": .int(ProcessStats.threadCount()),
            "heads": .int(stats.heads), "next_event_id": .int(stats.events + 1), "roots": .int(stats.roots),
            "subscribers": .int(streams.count), "ts": .int(Int64(Date().timeIntervalSince1970)),
        ]))
    }

    /// CelestialTree trims and lower-cases `view`; absent means struct.
    static func view(_ raw: String?) throws -> TreeEncoder.View {
        let text = (raw ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        if text.isEmpty { return .struct }
        guard let view = TreeEncoder.View(rawValue: text) else {
            throw APIError(.badRequest, "bad view", detail: "unknown view: \(raw ?? "")")
        }
        return view
    }

    private static let batchFields: Set<String> = ["ids", "view"]

    private func treesBatch(_ request: Request, _ direction: TreeEncoder.Direction) async throws -> Response {
        let body = try await RequestBody.bytes(request, bytesMax: store.limits.eventBodyBytesMax)
        let object = try RequestBody.object(body, allowed: Self.batchFields, depthMax: store.limits.jsonDepthMax)
        let ids = try RequestBody.ids(object, "ids", countMax: store.limits.treeBatchIDsMax) ?? []
        guard !ids.isEmpty else { throw APIError(.badRequest, "ids is required") }
        let view = try Self.view(try RequestBody.string(object, "view"))
        return try await trees(ids, direction, view, batch: true)
    }

    private func trees(_ ids: [EventID], _ direction: TreeEncoder.Direction, _ view: TreeEncoder.View, batch: Bool) async throws -> Response {
        let (store, treeMeta, budget) = (self.store, self.treeMeta, Self.budget(store))
        return JSONResponse.make(try await Blocking.runHeavy {
            try Self.trees(ids, direction, view, batch: batch, store: store, treeMeta: treeMeta, budget: budget)
        })
    }

    /// A tree's limits, its time counted from now: from the request, not from when a thread
    /// of the heavy pool takes it.
    static func budget(_ store: EventStore) -> TreeEncoder.Budget {
        TreeEncoder.Budget(nodesMax: store.limits.treeNodesMax, bytesMax: store.limits.treeBytesMax, deadline: .now + store.limits.treeTime)
    }

    /// The trees of `ids` (a JSON array of them for a batch), as the routes answer them; also
    /// called on the event loop's path (`FastTree`). Blocks: call it on the heavy pool (or with
    /// a small budget on the event loop, as `FastTree` does).
    static func trees(
        _ ids: [EventID], _ direction: TreeEncoder.Direction, _ view: TreeEncoder.View, batch: Bool, store: EventStore, treeMeta: TreeMetaCache,
        budget: TreeEncoder.Budget
    ) throws -> JSONWriter {
        do {
            return try writeTrees(ids, direction, view, batch: batch, store: store, treeMeta: treeMeta, budget: budget)
        } catch let tooLarge as TreeEncoder.TooLarge {
            throw APIError(.badRequest, "tree too large", detail: "the tree response would take \(tooLarge.reason)")
        }
    }

    /// `trees`, with a budget passed thrown as `TreeEncoder.TooLarge` (`FastTree` tries a
    /// smaller budget first).
    static func writeTrees(
        _ ids: [EventID], _ direction: TreeEncoder.Direction, _ view: TreeEncoder.View, batch: Bool, store: EventStore, treeMeta: TreeMetaCache,
        budget: TreeEncoder.Budget
    ) throws -> JSONWriter {
        let summary = direction == .descendants ? "descendant process failed" : "provenance process failed"
        var encoder = TreeEncoder(store: store, metaCache: treeMeta, direction: direction, view: view, budget: budget)
        var w = JSONWriter(capacity: 4096)
        if batch { w.writeRaw("[") }
        for (i, id) in ids.enumerated() {
            guard id >= 1, id <= encoder.last else {
                throw APIError(.notFound, summary, detail: "invalid id \(id): event not found")
            }
            try store.checkNotPruned(id)
            if i > 0 { w.writeRaw(",") }
            try encoder.write(id, into: &w)
        }
        if batch { w.writeRaw("]") }
        return w
    }
}
