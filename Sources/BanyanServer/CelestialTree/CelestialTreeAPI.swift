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

    /// Answers the request if a CelestialTree route serves its path; nil otherwise.
    func route(_ request: Request, client: ClientConnection) async throws -> Response? {
        let path = request.uri.path
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard let head = parts.first else { return nil }
        let tail: Substring = parts.count == 2 ? parts[parts.startIndex + 1] : ""
        let method = request.method
        func require(_ allowed: HTTPRequest.Method) throws {
            if method != allowed { throw APIError.methodNotAllowed(allow: [allowed]) }
        }
        switch (head, parts.count) {
        case ("healthz", 1): return health()
        case ("version", 1): return version()
        case ("emit", 1):
            try require(.post)
            try RequestBody.requireJSON(request)
            return try await emit(request)
        case ("event", 2): try require(.get); return try await event(try PathID.parse(tail))
        case ("children", 2): try require(.get); return try await children(try PathID.parse(tail))
        case ("ancestors", 2): try require(.get); return try await reachableRoots(try PathID.parse(tail))
        case ("descendants", 2), ("provenance", 2):
            try require(.get)
            let direction: TreeEncoder.Direction = head == "descendants" ? .descendants : .provenance
            let view = try Self.view(try QueryString(request).get("view"))
            return try await trees([try PathID.parse(tail)], direction, view, batch: false)
        case ("descendants", 1), ("provenance", 1):
            try require(.post)
            try RequestBody.requireJSON(request)
            return try await treesBatch(request, head == "descendants" ? .descendants : .provenance)
        case ("roots", 1): try require(.get); return try await list { try store.roots() }
        case ("heads", 1): try require(.get); return try await list { try store.heads() }
        case ("snapshot", 1): try require(.get); return try await snapshot()
        case ("subscribe", 1): try require(.get); return try EventStream.celestialTree(request, store: store, streams: streams, config: config, client: client)
        default: return nil
        }
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
        let limits = store.limits
        let body = try await RequestBody.bytes(request, bytesMax: store.limits.eventBodyBytesMax)
        let object = try RequestBody.object(body, allowed: Self.emitFields, depthMax: limits.jsonDepthMax)
        let type = try RequestBody.string(object, "type")
        guard let type, !type.isEmpty else { throw APIError(.badRequest, "emit failed", detail: "type is required") }
        let parents = try RequestBody.ids(object, "parents", countMax: limits.parentsPerEventMax) ?? []
        let message = try RequestBody.string(object, "message")
        let payload = object["payload"].flatMap { $0.isNull ? nil : $0 }
        let append = AppendRequest(type: type, parents: parents, message: message, payload: payload)
        let receipt: AppendReceipt
        do {
            receipt = try await store.append([append])
        } catch let error as LogError {
            throw APIError.from(error, summary: "emit failed", withIndex: false)
        }
        var w = JSONWriter()
        w.writeRaw("{\"id\":")
        w.writeUInt(receipt.results[0].id)
        w.writeRaw("}")
        return JSONResponse.make(w)
    }

    private func event(_ id: EventID) async throws -> Response {
        // A point read is a few microseconds against the block cache: a thread hop would cost more.
        guard let event = try store.event(id) else { throw APIError.notFound }
        return JSONResponse.make(EventJSON.encode(event))
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
        let store = self.store
        let budget = TreeEncoder.Budget(
            nodesMax: store.limits.treeNodesMax, bytesMax: store.limits.treeBytesMax, deadline: .now + store.limits.treeTime)
        let summary = direction == .descendants ? "descendant process failed" : "provenance process failed"
        let writer = try await Blocking.runHeavy { () throws -> JSONWriter in
            var encoder = TreeEncoder(store: store, direction: direction, view: view, budget: budget)
            var w = JSONWriter(capacity: 4096)
            if batch { w.writeRaw("[") }
            for (i, id) in ids.enumerated() {
                guard id >= 1, id <= encoder.last else {
                    throw APIError(.notFound, summary, detail: "invalid id \(id): event not found")
                }
                if i > 0 { w.writeRaw(",") }
                do {
                    try encoder.write(id, into: &w)
                } catch let tooLarge as TreeEncoder.TooLarge {
                    throw APIError(.badRequest, "tree too large", detail: "the tree response would take \(tooLarge.reason)")
                }
            }
            if batch { w.writeRaw("]") }
            return w
        }
        return JSONResponse.make(writer)
    }
}
