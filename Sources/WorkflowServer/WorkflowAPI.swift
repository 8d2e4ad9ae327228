import BanyanClient
import BanyanServer
import EventLog
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import Workflow

/// The workflow REST API (docs/WORKFLOWS.md, "The workflow API"): `/v1/workflows` and
/// `/v1/runs`, served by `banyan serve --workflows` beside the server's routes and by
/// `banyan workflow engine --listen`. It is a client of the log like the engine: every command
/// is an event appended to the Banyan server at `upstream`, every view is read from events. It
/// sends each caller's bearer token on, so the server decides what the caller may do.
public struct WorkflowAPI: Sendable {
    /// Where the Banyan server is (known once `serve` has bound its port).
    public final class Upstream: Sendable {
        private let url = Mutex<String?>(nil)
        public init(_ url: String? = nil) { self.url.withLock { $0 = url } }
        public func set(_ url: String) { self.url.withLock { $0 = url } }
        var value: String? { url.withLock { $0 } }
    }

    public let upstream: Upstream
    /// The engine in this process, whose counters `/metrics` shows.
    public let engineMetrics: EngineMetrics?
    let index: RunIndex
    let catalog: DefinitionCatalog
    let limits = WorkflowLimits()

    /// `views`: shared with the engine in the same process (its scheduler reads them too).
    public init(upstream: Upstream, engineMetrics: EngineMetrics? = nil, views: WorkflowViews = WorkflowViews()) {
        self.upstream = upstream
        self.engineMetrics = engineMetrics
        index = views.runs
        catalog = views.catalog
    }

    /// The workflow metrics in Prometheus's text format (runs by state read with the caller's token).
    public func metrics(_ request: Request) async throws -> [UInt8] {
        let client = try client(request)
        try await mapping { try await index.refresh(client) }
        return Array(WorkflowMetrics.render(runs: await index.counts(), engine: engineMetrics?.snapshot).utf8)
    }

    /// `GET /metrics` of an engine process: the workflow metrics alone.
    public var metricsRoute: Route {
        Route(.get, "/metrics", role: .read) { request, _ in
            let bytes = try await metrics(request)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .contentLength: String(bytes.count)],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }

    /// A page of the run history holds at most this many runs.
    public static let runsPageMax = 1_000
    public static let runsPageDefault = 50
    /// A signal's payload, JSON-encoded.
    public static let signalPayloadBytesMax = 64 << 10
    /// A request body to start a run (its inputs).
    public static let startBodyBytesMax = 1 << 20
    /// `GET /v1/workflows/{name}` shows at most this many versions (the newest), with their text.
    public static let versionsShownMax = 100
    /// Outputs in `GET /v1/runs/{id}/tasks` are cut to this many bytes of JSON.
    public static let outputPreviewBytesMax = 4_096

    public var routes: [Route] {
        [
            Route(.post, "/v1/workflows", role: .write) { request, _ in try await upload(request) },
            Route(.get, "/v1/workflows", role: .read) { request, _ in try await workflows(request) },
            Route(.get, "/v1/workflows/{name}", role: .read) { request, context in try await workflow(request, name: context.parameter) },
            Route(.delete, "/v1/workflows/{name}", role: .write) { request, context in try await delete(request, name: context.parameter) },
            Route(.post, "/v1/workflows/{name}/runs", role: .write) { request, context in try await execute(request, name: context.parameter) },
            Route(.get, "/v1/workflows/{name}/schedules", role: .read) { request, context in try await schedule(request, name: context.parameter) },
            Route(.post, "/v1/workflows/{name}/schedules", role: .write) { request, context in try await setSchedule(request, name: context.parameter) },
            Route(.delete, "/v1/workflows/{name}/schedules", role: .write) { request, context in try await setSchedule(request, name: context.parameter, remove: true) },
            Route(.get, "/v1/runs", role: .read) { request, _ in try await runs(request) },
            Route(.get, "/v1/runs/{id}", role: .read) { request, context in try await run(request, id: context.parameter) },
            Route(.get, "/v1/runs/{id}/tasks", role: .read) { request, context in try await tasks(request, id: context.parameter) },
            Route(.get, "/v1/runs/{id}/events", role: .read) { request, context in try await events(request, id: context.parameter) },
            Route(.get, "/v1/runs/{id}/watch", role: .read, webSocket: true) { request, context in try await watch(request, id: context.parameter, context: context) },
            Route(.post, "/v1/runs/{id}/cancel", role: .write) { request, context in try await cancel(request, id: context.parameter) },
            Route(.post, "/v1/runs/{id}/pause", role: .write) { request, context in try await pause(request, id: context.parameter) },
            Route(.post, "/v1/runs/{id}/resume", role: .write) { request, context in try await resume(request, id: context.parameter) },
            Route(.post, "/v1/runs/{id}/retry", role: .write) { request, context in try await retry(request, id: context.parameter) },
            Route(.post, "/v1/runs/{id}/signals/{name}", role: .write) { request, context in
                try await signal(request, id: context.parameters[0], name: context.parameters[1])
            },
        ]
    }

    /// `GET /healthz` of an engine process: `{"status": "ok", "engine": <id>}`.
    public static func health(engine: String) -> Route {
        Route(nil, "/healthz", role: nil) { _, _ in
            JSONResponse.make(json: Array(WorkflowValue.object([(key: "status", value: .text("ok")), (key: "engine", value: .text(engine))]).json.utf8))
        }
    }

    // MARK: Definitions

    func upload(_ request: Request) async throws -> Response {
        // Not text/plain: a plain HTML form can send that, and uploads run programs.
        let type = try BodyReader.requireJSON(request, also: ["application/yaml", "application/x-yaml", "text/yaml"])
        let body = try await BodyReader.bytes(request, bytesMax: limits.definitionBytesMax)
        var text: String
        if type == "application/json" {
            // `{"definition": "<YAML text>"}`, for clients that only speak JSON.
            guard let value = try? JSONText.parse(body), case .object(let members) = value, members.count == 1,
                let definition = value["definition"]?.stringValue
            else { throw APIError.invalid("a JSON body is {\"definition\": \"<the YAML text>\"}", field: "definition") }
            text = definition
        } else {
            guard let decoded = String(validating: body, as: UTF8.self) else { throw APIError.invalid("the definition is not UTF-8 text", field: "definition") }
            text = decoded
        }
        let client = try client(request)
        let (name, version, created) = try await mapping { try await catalog.upload(text, client) }
        return json(
            .object([
                (key: "workflow", value: .text(name)), (key: "version", value: int(version.number)), (key: "hash", value: .text(version.hash)),
                (key: "created", value: .bool(created)),
            ]), status: created ? .created : .ok)
    }

    func workflows(_ request: Request) async throws -> Response {
        let client = try client(request)
        let entries = try await mapping { try await catalog.refresh(client) }
        try await mapping { try await index.refresh(client) }
        let active = await index.active()
        let list = entries.values.sorted { $0.name < $1.name }.compactMap { entry -> WorkflowValue? in
            guard !entry.deleted, let latest = entry.latest else { return nil }
            return .object(
                [(key: "name", value: .text(entry.name))] + version(latest) + [
                    (key: "versions", value: int(entry.versions.count)), (key: "active_runs", value: int(active[entry.name] ?? 0)),
                    (key: "schedule", value: entry.schedule.map { .text($0.cron.text) } ?? .null),
                ])
        }
        return json(.object([(key: "workflows", value: .array(list))]))
    }

    /// Its versions, newest first, each with its text (read by key, at most `versionsShownMax`).
    func workflow(_ request: Request, name: Substring) async throws -> Response {
        let client = try client(request)
        let entry = try await mapping { try await catalog.entry(String(name), client) }
        var versions: [WorkflowValue] = []
        for v in entry.versions.reversed().prefix(Self.versionsShownMax) {
            let text = try await mapping { try await catalog.definition(entry.name, version: v.number, client) }
            versions.append(.object(version(v) + [(key: "definition", value: .text(text))]))
        }
        return json(
            .object([
                (key: "workflow", value: .text(entry.name)), (key: "latest", value: int(entry.latest!.number)), (key: "version_count", value: int(entry.versions.count)),
                (key: "versions", value: .array(versions)),
            ]))
    }

    func delete(_ request: Request, name: Substring) async throws -> Response {
        let force = try QueryString(request).flag("force")
        let client = try client(request)
        _ = try await mapping { try await catalog.entry(String(name), client) }
        try await mapping { try await index.refresh(client) }
        let active = await index.active()[String(name)] ?? 0
        if active > 0, !force { throw map(DefinitionCatalog.CatalogError.activeRuns(String(name), active)) }
        try await mapping { try await catalog.delete(String(name), client) }
        return json(.object([(key: "workflow", value: .text(String(name))), (key: "deleted", value: .bool(true)), (key: "active_runs", value: int(active))]))
    }

    /// Starts a run of the workflow's latest version. `Idempotency-Key`: the run's id is derived
    /// from it, so a retried start is the same run (the same workflow and inputs, whatever was
    /// uploaded since); other inputs under the same key are refused (409).
    func execute(_ request: Request, name: Substring) async throws -> Response {
        let client = try client(request)
        let (entry, all) = try await mapping { try await catalog.entryAndAll(String(name), client) }
        let latest = entry.latest!
        let body = try await BodyReader.bytes(request, bytesMax: Self.startBodyBytesMax)
        var inputs: [String: WorkflowValue] = [:]
        var runID: String?
        if !body.isEmpty {
            try BodyReader.requireJSON(request)
            guard let value = try? JSONText.parse(body, depthMax: limits.valueDepthMax), case .object(let members) = value else {
                throw APIError.invalid("the body is a JSON object: {\"inputs\": {...}, \"run\": \"<id>\"}, both optional", field: "body")
            }
            for (key, value) in members {
                switch key {
                case "inputs":
                    guard case .object(let given) = value else { throw APIError.invalid("inputs is an object of input names to values", field: "inputs") }
                    for (k, v) in given { inputs[k] = v }
                case "run":
                    guard let id = value.stringValue else { throw APIError.invalid("run is a string", field: "run") }
                    runID = id
                default: throw APIError.invalid("unknown member \(key.prefix(64)); a body has inputs and run", field: key)
                }
            }
        }
        let key = request.headers[.idempotencyKey]
        if let key {
            guard !key.isEmpty, key.utf8.count <= 256 else { throw APIError.invalid("Idempotency-Key is 1-256 bytes", field: "Idempotency-Key") }
            guard runID == nil else { throw APIError.invalid("give either run or Idempotency-Key, not both", field: "run") }
            runID = "k-" + RunEvents.version(of: "\(name)\u{0}\(key)")
        }
        let text = try await mapping { try await catalog.definition(entry.name, version: latest.number, client) }
        let children = try await mapping { try await catalog.children(of: text, client, known: all) }
        let engine = Engine(client: client)
        var started = latest
        let run: String
        do {
            run = try await engine.start(definition: text, inputs: inputs, run: runID, children: children)
        } catch Engine.EngineError.runExists(let existing) where key != nil {
            // The key's run, started before a new version was uploaded: the same run if it was
            // asked with the same inputs.
            guard let earlier = try await mapping({ try await engine.request(of: existing) }), earlier.payload["workflow"]?.stringValue == entry.name,
                inputs.allSatisfy({ earlier.payload["inputs"]?[$0.key] == $0.value }),
                let hash = earlier.payload["version"]?.stringValue, let v = entry.versions.first(where: { $0.hash == hash })
            else { throw map(Engine.EngineError.runExists(existing)) }
            run = existing
            started = v
        } catch {
            throw map(error)
        }
        return json(
            .object([(key: "run", value: .text(run)), (key: "workflow", value: .text(entry.name))] + version(started)), status: .created)
    }

    // MARK: Schedules

    /// The schedule in force, and its next ticks.
    func schedule(_ request: Request, name: Substring) async throws -> Response {
        let client = try client(request)
        let entry = try await mapping { try await catalog.entry(String(name), client) }
        return json(scheduleView(entry.name, entry.schedule))
    }

    /// Sets the workflow's schedule (the body: `{"cron", "timezone", "overlap", "catch_up",
    /// "inputs"}`), or removes it; in force until the next version or schedule.
    func setSchedule(_ request: Request, name: Substring, remove: Bool = false) async throws -> Response {
        var text: String?
        if !remove {
            try BodyReader.requireJSON(request)
            let body = try await BodyReader.bytes(request, bytesMax: Self.startBodyBytesMax)
            guard let value = try? JSONText.parse(body, depthMax: limits.valueDepthMax), case .object = value else {
                throw APIError.invalid("the body is a JSON object: {\"cron\": \"*/5 * * * *\", \"timezone\", \"overlap\", \"catch_up\", \"inputs\"}", field: "body")
            }
            text = value.json
        }
        let client = try client(request)
        let schedule: Schedule?
        do {
            schedule = try await catalog.setSchedule(String(name), text, client)
        } catch DefinitionCatalog.CatalogError.definition(let e) {
            throw APIError.invalid("\(e)", field: e.field.isEmpty ? "schedule" : e.field, error: "invalid schedule")
        } catch {
            throw map(error)
        }
        return json(scheduleView(String(name), schedule), status: remove ? .ok : .created)
    }

    func scheduleView(_ name: String, _ schedule: Schedule?) -> WorkflowValue {
        guard let schedule else { return .object([(key: "workflow", value: .text(name)), (key: "schedule", value: .null), (key: "next", value: .array([]))]) }
        var next: [WorkflowValue] = []
        var from = Date()
        for _ in 0..<5 {
            guard let t = schedule.cron.next(after: from, in: schedule.timezone) else { break }
            next.append(.text(t.rfc3339()))
            from = t
        }
        let inputs = schedule.inputs.keys.sorted().map { (key: $0, value: schedule.inputs[$0]!) }
        return .object([
            (key: "workflow", value: .text(name)),
            (
                key: "schedule",
                value: .object([
                    (key: "cron", value: .text(schedule.cron.text)), (key: "timezone", value: .text(schedule.timezoneName)),
                    (key: "overlap", value: .text(schedule.overlap.rawValue)), (key: "catch_up", value: .text(schedule.catchUp.rawValue)),
                    (key: "inputs", value: .object(inputs)),
                ])
            ),
            (key: "next", value: .array(next)),
        ])
    }

    // MARK: Runs

    func runs(_ request: Request) async throws -> Response {
        let query = try QueryString(request)
        var filter = RunIndex.Filter(workflow: query.get("workflow"))
        if let raw = query.get("status") {
            var states: Set<RunIndex.State> = []
            for name in raw.split(separator: ",", omittingEmptySubsequences: false) {
                guard let state = RunIndex.State(rawValue: String(name)) else {
                    throw APIError.invalid(
                        "status is a comma-separated list of \(RunIndex.State.allCases.map(\.rawValue).joined(separator: ", ")), not \"\(raw.prefix(64))\"",
                        field: "status")
                }
                states.insert(state)
            }
            filter.states = states
        }
        filter.since = try NativeAPI.time(query.get("since"), field: "since")
        filter.until = try NativeAPI.time(query.get("until"), field: "until")
        let limit = try NativeAPI.integer(query.get("limit"), field: "limit") ?? Self.runsPageDefault
        guard (1...Self.runsPageMax).contains(limit) else { throw APIError.invalid("limit is 1-\(Self.runsPageMax)", field: "limit") }
        let cursor = try NativeAPI.id(query.get("cursor"), field: "cursor")
        let order = query.get("order") ?? "desc"
        guard order == "asc" || order == "desc" else { throw APIError.invalid("order is asc or desc", field: "order") }
        let client = try client(request)
        try await mapping { try await index.refresh(client) }
        let page = await index.list(filter, limit: limit, cursor: cursor, ascending: order == "asc")
        let versions = try await versionNumbers(request)
        return json(
            .object([
                (key: "runs", value: .array(page.runs.map { summary($0, versions: versions) })), (key: "total", value: int(page.total)), (key: "has_more", value: .bool(page.hasMore)),
                (key: "next_cursor", value: page.next.map { .text(String($0)) } ?? .null),
            ]))
    }

    func run(_ request: Request, id: Substring) async throws -> Response {
        let status = try await status(request, id)
        var progress = (total: status.tasks.count, completed: 0, running: 0, failed: 0, pending: 0, skipped: 0)
        for task in status.tasks {
            switch task.state {
            case "completed": progress.completed += 1
            case "started", "scheduled", "retrying": progress.running += 1
            case "failed", "cancelled": progress.failed += 1
            case _ where task.state.hasPrefix("skipped"): progress.skipped += 1
            default: progress.pending += 1  // never started, or interrupted by a pause (runs again on resume)
            }
        }
        var members: [(key: String, value: WorkflowValue)] = [
            (key: "run", value: .text(status.run)), (key: "workflow", value: .text(status.workflow)), (key: "hash", value: .text(status.version)),
            (key: "version", value: try await versionNumbers(request)[status.workflow + "\u{0}" + status.version].map(int) ?? .null),
            (key: "state", value: .text(status.state)), (key: "error", value: status.error.map(WorkflowValue.text) ?? .null),
            (key: "inputs", value: status.inputs), (key: "parent", value: status.parent.map(WorkflowValue.text) ?? .null),
            (
                key: "progress",
                value: .object([
                    (key: "total", value: int(progress.total)), (key: "completed", value: int(progress.completed)), (key: "running", value: int(progress.running)),
                    (key: "failed", value: int(progress.failed)), (key: "pending", value: int(progress.pending)), (key: "skipped", value: int(progress.skipped)),
                ])
            ),
        ]
        members += times(requested: status.requestedAtUnixNano, started: status.startedAtUnixNano, ended: status.endedAtUnixNano)
        return json(.object(members))
    }

    func tasks(_ request: Request, id: Substring) async throws -> Response {
        let status = try await status(request, id)
        let tasks = status.tasks.map { task -> WorkflowValue in
            let attempts = task.history.map { a -> WorkflowValue in
                var members: [(key: String, value: WorkflowValue)] = [
                    (key: "attempt", value: int(a.number)), (key: "state", value: .text(a.state)),
                    (key: "started_at", value: a.startedAtUnixNano.map(time) ?? .null), (key: "ended_at", value: a.endedAtUnixNano.map(time) ?? .null),
                    (key: "duration_ms", value: a.durationMs.map(int) ?? .null), (key: "engine", value: a.engine.map(WorkflowValue.text) ?? .null),
                ]
                if let error = a.error { members.append((key: "error", value: .text(error))) }
                if let output = a.output { members.append((key: "output", value: preview(output))) }
                return .object(members)
            }
            return .object([
                (key: "id", value: .text(task.id)), (key: "state", value: .text(task.state)), (key: "attempts", value: .array(attempts)),
                (key: "error", value: task.error.map(WorkflowValue.text) ?? .null), (key: "needs", value: .array(task.needs.map(WorkflowValue.text))),
            ])
        }
        return json(.object([(key: "run", value: .text(status.run)), (key: "state", value: .text(status.state)), (key: "tasks", value: .array(tasks))]))
    }

    /// The run's events, a page at a time, as `GET /v1/events?stream=job_events:<run>` answers.
    func events(_ request: Request, id: Substring) async throws -> Response {
        let query = try QueryString(request)
        let after = try NativeAPI.id(query.get("after"), field: "after")
        let limit = try NativeAPI.integer(query.get("limit"), field: "limit") ?? 100
        guard (1...10_000).contains(limit) else { throw APIError.invalid("limit is 1-10000", field: "limit") }
        let client = try client(request)
        let requestID = try await requestID(client, run: String(id))
        let bytes = try await mapping { try await client.page(after: max(after ?? 0, requestID - 1), limit: limit, stream: RunEvents.stream(String(id))) }
        return Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8", .contentLength: String(bytes.count)],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The run's events, from its request on or after `Last-Event-ID` (or `?after=`), then its end
    /// once that is sent: as Server-Sent Events (`/v1/stream`'s frames: `id`, `event: event`, the
    /// event's JSON; then `event: end` with the run's state, and the stream closes), or, when the
    /// request asks for a WebSocket, the same frames as text messages, each a JSON object
    /// `{"id", "event", "data"}` (docs/WORKFLOWS.md, "Watching a run").
    func watch(_ request: Request, id: Substring, context: RouteContext) async throws -> Response {
        let client = try client(request)
        let run = String(id)
        let requestID = try await requestID(client, run: run)
        let query = try QueryString(request)
        let resume = try NativeAPI.id(request.headers[.lastEventID], field: "Last-Event-ID") ?? NativeAPI.id(query.get("after"), field: "after")
        let start = max(resume ?? 0, requestID - 1)
        if context.headOnly { return Response(status: .ok, headers: Self.streamHeaders) }
        // Resumed after the run's end was sent: only the end frame is left.
        var ended: String?
        for state in RunLifecycle.State.allCases where state.ended {
            guard let bytes = try await mapping({ try await client.event(key: RunEvents.runKey(run, state.rawValue)) }), let value = try? JSONText.parse(bytes),
                let eid = value["id"]?.intValue, UInt64(eid) <= start
            else { continue }
            ended = state.rawValue
        }
        let watch = Watch(client: client, run: run, start: start, endedBefore: ended)
        if let webSocket = context.webSocket {
            return webSocket.accept { inbound, outbound in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        let ended = try await watch.run { frame in
                            if let frame { try await outbound.write(.text(frame.json)) }
                        }
                        // Cancelled: the client left or sent a message, and the parent closes.
                        guard !Task.isCancelled else { return }
                        // Not ended: the watcher fell behind, or the server's stream failed; 1013 is "try again later".
                        try await outbound.close(ended ? .normalClosure : .unknown(1013), reason: ended ? nil : "resume with ?after=")
                    }
                    // A client has only close and ping frames to send (handled below this): the
                    // stream ends when it leaves or answers the close; a message is refused.
                    for try await _ in inbound {
                        group.cancelAll()
                        _ = try? await group.next()  // the sender stopped: this close is the only one
                        try await outbound.close(.policyViolation, reason: "this socket takes no messages")
                        break
                    }
                    group.cancelAll()
                }
            }
        }
        let connection = context.client
        let body = ResponseBody { writer in
            try await watch.run(isGone: { connection.isGone }) { frame in
                try await writer.write(frame.map { ByteBuffer(bytes: $0.sse) } ?? ByteBuffer(string: ": heartbeat\n\n"))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: Self.streamHeaders, body: body)
    }

    static let streamHeaders: HTTPFields = [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"]

    /// One watcher of one run: reads the run's stream from the server and hands each frame on,
    /// whichever way it is written.
    struct Watch: Sendable {
        /// What a watcher is sent: the run's events, then `end` with its state (or `error`).
        struct Frame: Sendable {
            var id: UInt64?
            var event: String
            var data: [UInt8]

            static func end(run: String, state: String) -> Frame {
                Frame(event: "end", data: Array(WorkflowValue.object([(key: "run", value: .text(run)), (key: "state", value: .text(state))]).json.utf8))
            }

            var sse: [UInt8] { Array((id.map { "id: \($0)\n" } ?? "").utf8) + Array("event: \(event)\ndata: ".utf8) + data + Array("\n\n".utf8) }
            var json: String {
                "{" + (id.map { "\"id\":\($0)," } ?? "") + "\"event\":\(WorkflowValue.text(event).json),\"data\":" + String(decoding: data, as: UTF8.self) + "}"
            }
        }

        /// Frames read from the server and not yet written to a slow watcher; past it no more are
        /// read, the stream ends after those, and the watcher reconnects (`Last-Event-ID` or
        /// `?after=` resumes it exactly).
        static let bufferMax = 10_000
        /// An SSE watcher with nothing to read is sent a comment this often.
        static let heartbeat = Duration.seconds(15)

        let client: BanyanHTTPClient
        let run: String
        let start: UInt64
        /// The end's state, when it was sent before the watcher resumed.
        let endedBefore: String?

        /// `send(nil)`: a heartbeat, when nothing was sent for `heartbeat` (an SSE comment; a
        /// WebSocket is pinged by its own library instead, and sends nothing for it). Returns
        /// whether the end was sent (false: the watcher is gone, cancelled or behind, or the
        /// server's stream failed).
        @discardableResult
        func run(isGone: @Sendable () -> Bool = { false }, send: (Frame?) async throws -> Void) async throws -> Bool {
            if let endedBefore {
                try await send(.end(run: run, state: endedBefore))
                return true
            }
            enum Item: Sendable {
                case frame(StreamFrame)
                case tick
                case failed(String)
            }
            let (items, sink) = AsyncStream.makeStream(of: Item.self, bufferingPolicy: .bufferingOldest(Self.bufferMax))
            let (client, run, start) = (self.client, self.run, self.start)
            let pump = Task {
                do {
                    for try await frame in client.stream(after: start, stream: RunEvents.stream(run)) {
                        if case .dropped = sink.yield(.frame(frame)) { break }
                    }
                } catch {
                    sink.yield(.failed("\(error)"))
                }
                sink.finish()
            }
            let ticker = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    sink.yield(.tick)
                }
            }
            defer {
                pump.cancel()
                ticker.cancel()
            }
            var lastSent = ContinuousClock.now
            for await item in items {
                switch item {
                case .tick:
                    if isGone() { return false }
                    if ContinuousClock.now - lastSent >= Self.heartbeat {
                        try await send(nil)
                        lastSent = .now
                    }
                case .failed(let why):
                    try await send(Frame(event: "error", data: Array(WorkflowValue.object([(key: "detail", value: .text(why))]).json.utf8)))
                    return false
                case .frame(let frame):
                    try await send(Frame(id: frame.id, event: frame.event, data: frame.data))
                    lastSent = .now
                    guard frame.event == "event", let type = (try? JSONText.parse(frame.data))?["type"]?.stringValue,
                        RunLifecycle.endTypes.contains(type)
                    else { continue }
                    try await send(.end(run: run, state: RunLifecycle.State(endType: type)?.rawValue ?? "ended"))
                    return true
                }
            }
            return false
        }
    }

    func cancel(_ request: Request, id: Substring) async throws -> Response {
        let body = try await BodyReader.bytes(request, bytesMax: 16 << 10)
        var reason = "cancelled through the workflow API"
        if !body.isEmpty {
            try BodyReader.requireJSON(request)
            guard let value = try? JSONText.parse(body), case .object = value, let given = value["reason"]?.stringValue else {
                throw APIError.invalid("the body is {\"reason\": \"...\"} (optional)", field: "reason")
            }
            reason = given
        }
        let engine = Engine(client: try client(request))
        let recorded = try await mapping { try await engine.cancel(run: try runID(id), reason: reason) }
        return json(.object([(key: "run", value: .text(String(id))), (key: "state", value: .text("cancelling")), (key: "recorded", value: .bool(recorded))]))
    }

    /// `?now=true`: the run's work attempts stop too, to run again once resumed.
    func pause(_ request: Request, id: Substring) async throws -> Response {
        let now = try QueryString(request).flag("now")
        let engine = Engine(client: try client(request))
        let recorded = try await mapping { try await engine.pause(run: try runID(id), now: now) }
        return json(.object([(key: "run", value: .text(String(id))), (key: "state", value: .text("paused")), (key: "recorded", value: .bool(recorded))]))
    }

    func resume(_ request: Request, id: Substring) async throws -> Response {
        let engine = Engine(client: try client(request))
        let recorded = try await mapping { try await engine.resume(run: try runID(id)) }
        return json(.object([(key: "run", value: .text(String(id))), (key: "recorded", value: .bool(recorded))]))
    }

    /// A failed run again from its failed tasks, as a new run keeping the completed outputs.
    func retry(_ request: Request, id: Substring) async throws -> Response {
        let engine = Engine(client: try client(request))
        let (run, recorded) = try await mapping { try await engine.retry(run: try runID(id)) }
        return json(
            .object([(key: "run", value: .text(run)), (key: "retry_of", value: .text(String(id))), (key: "recorded", value: .bool(recorded))]),
            status: recorded ? .created : .ok)
    }

    func signal(_ request: Request, id: Substring, name: Substring) async throws -> Response {
        let body = try await BodyReader.bytes(request, bytesMax: Self.signalPayloadBytesMax)
        var payload = WorkflowValue.null
        if !body.isEmpty {
            try BodyReader.requireJSON(request)
            do { payload = try JSONText.parse(body, depthMax: limits.valueDepthMax) } catch { throw APIError.invalid("the payload is not JSON: \(error)", field: "payload") }
        }
        let engine = Engine(client: try client(request))
        let sent = try await mapping { try await engine.signal(run: try runID(id), name: String(name), payload: payload) }
        return json(.object([(key: "run", value: .text(String(id))), (key: "signal", value: .text(String(name))), (key: "recorded", value: .bool(sent))]))
    }

    // MARK: Helpers

    /// The client for one request: the upstream server, with the caller's token.
    func client(_ request: Request) throws -> BanyanHTTPClient {
        guard let url = upstream.value else { throw APIError(.serviceUnavailable, "starting", detail: "the workflow API is not ready yet") }
        var token: String?
        if let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") { token = String(header.dropFirst(7)) }
        return BanyanHTTPClient(baseURL: url, token: token)
    }

    func status(_ request: Request, _ id: Substring) async throws -> RunStatus {
        let engine = Engine(client: try client(request))
        return try await mapping { try await engine.status(run: try runID(id)) }
    }

    /// A run id from the path: anything that cannot be one is an unknown run (404).
    func runID(_ id: Substring) throws -> String {
        guard WorkflowLimits.isName(String(id), bytesMax: WorkflowLimits.runIDBytesMax) else {
            throw map(Engine.EngineError.unknownRun(String(id.prefix(80))))
        }
        return String(id)
    }

    /// The catalog's version numbers by workflow name and definition hash (`name\0hash`): a
    /// run records its definition's hash; the number is known when the definition was uploaded.
    func versionNumbers(_ request: Request) async throws -> [String: Int] {
        let client = try client(request)
        let entries = try await mapping { try await catalog.refresh(client) }
        var numbers: [String: Int] = [:]
        for entry in entries.values {
            for v in entry.versions { numbers[entry.name + "\u{0}" + v.hash] = v.number }
        }
        return numbers
    }

    /// The id of the run's request (404 for an unknown run).
    func requestID(_ client: BanyanHTTPClient, run: String) async throws -> UInt64 {
        guard WorkflowLimits.isName(run, bytesMax: WorkflowLimits.runIDBytesMax),
            let bytes = try await mapping({ try await client.event(key: RunEvents.runKey(run, "requested")) }),
            let value = try? JSONText.parse(bytes), let id = value["id"]?.intValue, id > 0
        else { throw map(Engine.EngineError.unknownRun(String(run.prefix(80)))) }
        return UInt64(id)
    }

    func summary(_ s: RunIndex.Summary, versions: [String: Int]) -> WorkflowValue {
        let life = s.lifecycle
        var members: [(key: String, value: WorkflowValue)] = [
            (key: "run", value: .text(s.run)), (key: "workflow", value: .text(s.workflow)), (key: "hash", value: .text(s.version)),
            (key: "version", value: versions[s.workflow + "\u{0}" + s.version].map(int) ?? .null), (key: "state", value: .text(life.state.rawValue)),
        ]
        members.append((key: "error", value: life.error.map(WorkflowValue.text) ?? .null))
        members.append((key: "parent", value: s.parent.map(WorkflowValue.text) ?? .null))
        members.append((key: "cursor", value: .text(String(s.requestID))))
        return .object(members + times(requested: s.requestedAtUnixNano, started: life.startedAtUnixNano, ended: life.endedAtUnixNano))
    }

    func version(_ v: DefinitionCatalog.Version) -> [(key: String, value: WorkflowValue)] {
        [(key: "version", value: int(v.number)), (key: "hash", value: .text(v.hash)), (key: "uploaded_at", value: time(v.uploadedAtUnixNano))]
    }

    func times(requested: Int64, started: Int64?, ended: Int64?) -> [(key: String, value: WorkflowValue)] {
        let end = ended ?? Engine.nowUnixNano()
        return [
            (key: "requested_at", value: time(requested)), (key: "started_at", value: started.map(time) ?? .null),
            (key: "ended_at", value: ended.map(time) ?? .null),
            (key: "duration_ms", value: started.map { int(Int(max(0, end - $0) / 1_000_000)) } ?? .null),
        ]
    }

    /// RFC 3339 with milliseconds, UTC (`2026-11-30T13:21:53.546Z`), as Banyan writes every time.
    func time(_ unixNano: Int64) -> WorkflowValue {
        .text(Date(timeIntervalSince1970: Double(unixNano) / 1e9).rfc3339(milliseconds: true))
    }

    func int(_ n: Int) -> WorkflowValue { .number(String(n)) }

    /// An output as it is, or cut to its first `outputPreviewBytesMax` bytes of JSON as text.
    func preview(_ output: WorkflowValue) -> WorkflowValue {
        let text = output.json
        guard text.utf8.count > Self.outputPreviewBytesMax else { return output }
        return .text("[output truncated] " + String(decoding: text.utf8.prefix(Self.outputPreviewBytesMax), as: UTF8.self))
    }

    func json(_ value: WorkflowValue, status: HTTPResponse.Status = .ok) -> Response {
        JSONResponse.make(json: Array(value.json.utf8), status: status)
    }

    func mapping<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch { throw map(error) }
    }

    /// The engine's and the catalog's errors as HTTP errors, naming the field at fault; the
    /// upstream server's answers keep their status (401, 403, 503), its failures are 502.
    func map(_ error: any Error) -> any Error {
        switch error {
        case let e as APIError: return e
        case let e as Engine.EngineError:
            switch e {
            case .unknownRun: return APIError(.notFound, "unknown run", detail: "\(e)")
            case .runExists: return APIError(.conflict, "run exists", detail: "\(e)").naming("run")
            case .badRunID: return APIError.invalid("\(e)", field: "run")
            case .definition, .subWorkflow: return APIError.invalid("\(e)", field: "definition", error: "invalid definition")
            case .inputs: return APIError.invalid("\(e)", field: "inputs")
            case .log: return APIError(.badGateway, "bad answer from the log", detail: "\(e)")
            }
        case let e as DefinitionCatalog.CatalogError:
            switch e {
            case .definition: return APIError.invalid("\(e)", field: "definition", error: "invalid definition")
            case .unknownWorkflow: return APIError(.notFound, "unknown workflow", detail: "\(e)")
            case .activeRuns: return APIError(.conflict, "workflow has active runs", detail: "\(e)").naming("force")
            case .busy: return APIError(.conflict, "concurrent change", detail: "\(e)")
            }
        case let e as Engine.SignalError:
            switch e {
            case .badName: return APIError.invalid("\(e)", field: "name")
            case .runEnded: return APIError(.conflict, "run has ended", detail: "\(e)")
            case .wrongState: return APIError(.conflict, "invalid state", detail: "\(e)")
            case .alreadySent: return APIError(.conflict, "signal already sent", detail: "\(e)").naming("payload")
            }
        case let e as BanyanClientError:
            // The server's refusals keep their status and words (a token too weak, an event over
            // its payload limit, a pruned read); the server out of reach is a 503.
            if (400..<500).contains(e.status) || e.status == 503 {
                let refused = APIError(HTTPResponse.Status(code: e.status), e.error, detail: e.detail)
                return e.field.map { refused.naming($0) } ?? refused
            }
            var unavailable = APIError(.serviceUnavailable, "the Banyan server failed", detail: "\(e)")
            unavailable.headers[.retryAfter] = "1"
            return unavailable
        default:
            return error
        }
    }
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
}
