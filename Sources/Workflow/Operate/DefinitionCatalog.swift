import BanyanClient

/// Uploaded workflow definitions, versioned, kept as events in the stream `workflow_definitions`
/// (docs/WORKFLOWS.md, "The workflow API"): an upload is `workflow.definition.uploaded` keyed
/// `workflow/<name>/version/<n>` (the YAML text in its payload), a delete
/// `workflow.definition.deleted` keyed `workflow/<name>/deleted/<n>` (n: the latest version
/// then). This view keeps each version's number, hash and time, brought up to date from where it
/// got to before every answer; a definition's text is read by its key when it is needed.
public actor DefinitionCatalog {
    public static let stream = "workflow_definitions"

    public struct Version: Sendable, Hashable {
        public var number: Int
        /// `RunEvents.version(of:)` of the text: what runs of this version carry as `version`.
        public var hash: String
        public var uploadedAtUnixNano: Int64
    }

    public struct Entry: Sendable {
        public var name: String
        /// Oldest first.
        public var versions: [Version] = []
        /// Deleted after its latest version was uploaded.
        public var deleted = false
        public var latest: Version? { versions.last }
        /// The schedule in force: the latest version's `schedule:`, or one set later through
        /// `POST /v1/workflows/{name}/schedules` (nil: none, or removed).
        public var schedule: Schedule?
        /// The server's time since when it is in force (ticks before it do not count).
        public var scheduleSinceUnixNano: Int64 = 0
        /// Schedules set through the API so far (the next one's number).
        public var scheduleChanges = 0
    }

    public enum CatalogError: Error, Sendable, CustomStringConvertible {
        case definition(DefinitionError)
        case unknownWorkflow(String)
        case activeRuns(String, Int)
        case busy(String)

        public var description: String {
            switch self {
            case .definition(let e): "the definition: \(e)"
            case .unknownWorkflow(let name): "no workflow \(name.prefix(130)) (upload it with POST /v1/workflows or banyan workflow upload)"
            case .activeRuns(let name, let n): "workflow \(name) has \(n) active run\(n == 1 ? "" : "s"): wait for them, cancel them, or delete with ?force=true"
            case .busy(let name): "workflow \(name) changed while this request was recorded; try again"
            }
        }
    }

    private var entries: [String: Entry] = [:]
    private var cursor: UInt64?
    /// Definition texts read by key, by key (a version never changes); at most `textsMax`.
    private var texts: [String: String] = [:]
    static let textsMax = 256

    public init() {}

    static func versionKey(_ name: String, _ n: Int) -> String { "workflow/\(name)/version/\(n)" }

    /// Every workflow ever uploaded, by name (deleted ones too: their version numbers go on), as
    /// the log holds them now; read with `client` (the caller's token).
    @discardableResult
    public func refresh(_ client: BanyanHTTPClient) async throws -> [String: Entry] {
        let start: UInt64
        if let cursor { start = cursor } else { start = try await RunEvents.logStart(client) }
        let next = try await RunEvents.readPages(client, after: start, stream: Self.stream) { events in
            for event in events { apply(event) }
        }
        cursor = max(cursor ?? 0, next)
        return entries
    }

    private func apply(_ event: RunEvents.Recorded) {
        guard let name = event.payload["workflow"]?.stringValue, let number = event.payload["version"]?.intValue else { return }
        switch event.type {
        case "workflow.definition.uploaded":
            guard let text = event.payload["definition"]?.stringValue, number > entries[name]?.latest?.number ?? 0 else { return }
            entries[name, default: Entry(name: name)].versions.append(Version(number: number, hash: RunEvents.version(of: text), uploadedAtUnixNano: event.timeUnixNano))
            entries[name]!.deleted = false
            entries[name]!.schedule = (try? RunReader.definitions.parse(text))?.schedule
            entries[name]!.scheduleSinceUnixNano = event.timeUnixNano
        case "workflow.schedule.set":
            guard entries[name] != nil, let n = event.payload["change"]?.intValue else { return }
            entries[name]!.scheduleChanges = max(entries[name]!.scheduleChanges, n)
            // Set for a version that is no longer the latest: the newer version's schedule holds.
            guard entries[name]!.latest?.number == number else { return }
            // Checked when it was recorded; the definition's inputs were checked then too.
            entries[name]!.schedule = event.payload["schedule"]?.stringValue.flatMap { try? DefinitionParser.parseSchedule($0, for: nil) }
            entries[name]!.scheduleSinceUnixNano = event.timeUnixNano
        case "workflow.definition.deleted":
            // Only a delete of the latest version: one recorded late must not hide a newer one.
            if entries[name]?.latest?.number == number { entries[name]!.deleted = true }
        default: break
        }
    }

    /// The workflow, unless unknown or deleted.
    public func entry(_ name: String, _ client: BanyanHTTPClient) async throws -> Entry {
        try await entryAndAll(name, client).entry
    }

    /// The workflow, and every workflow as the same read found them.
    public func entryAndAll(_ name: String, _ client: BanyanHTTPClient) async throws -> (entry: Entry, all: [String: Entry]) {
        let all = try await refresh(client)
        guard let entry = all[name], !entry.deleted, entry.latest != nil else { throw CatalogError.unknownWorkflow(name) }
        return (entry, all)
    }

    /// The text of version `number` of the workflow.
    public func definition(_ name: String, version number: Int, _ client: BanyanHTTPClient) async throws -> String {
        if let text = texts[Self.versionKey(name, number)] { return text }
        guard let bytes = try await client.event(key: Self.versionKey(name, number)) else { throw CatalogError.unknownWorkflow(name) }
        let event: WorkflowValue
        do { event = try JSONText.parse(bytes) } catch { throw Engine.EngineError.log("\(error)") }
        guard let text = event["payload"]?["definition"]?.stringValue else { throw Engine.EngineError.log("\(Self.versionKey(name, number)) holds no definition") }
        if texts.count >= Self.textsMax { texts.removeAll() }
        texts[Self.versionKey(name, number)] = text
        return text
    }

    /// Validates `text` and records it as the workflow's next version, unless its latest
    /// version has the same text (then that one is returned, `created` false: uploading the same
    /// file twice is one version).
    public func upload(_ text: String, _ client: BanyanHTTPClient) async throws -> (name: String, version: Version, created: Bool) {
        let definition: WorkflowDefinition
        do { definition = try RunReader.definitions.parse(text) } catch { throw CatalogError.definition(error) }
        let name = definition.name
        let hash = RunEvents.version(of: text)
        // Two uploads at once both try the same next key; the log takes one (409 for the other),
        // which then reads again.
        for _ in 0..<3 {
            let entry = try await refresh(client)[name]
            if let latest = entry?.latest, entry?.deleted == false, latest.hash == hash { return (name, latest, false) }
            let number = (entry?.latest?.number ?? 0) + 1
            let draft = RunEvents.Draft(
                type: "workflow.definition.uploaded", key: Self.versionKey(name, number), stream: Self.stream, parentKeys: [],
                payload: .object([(key: "workflow", value: .text(name)), (key: "version", value: .number(String(number))), (key: "definition", value: .text(text))]))
            do {
                try await append(draft, client)
                let recorded = try await refresh(client)[name]?.versions.first { $0.number == number }
                return (name, recorded ?? Version(number: number, hash: hash, uploadedAtUnixNano: Engine.nowUnixNano()), true)
            } catch let error as BanyanClientError where error.status == 409 {
                continue
            }
        }
        throw CatalogError.busy(name)
    }

    /// Records the workflow's deletion. Its runs stay in the log (and in the run history);
    /// uploading it again starts at the next version number.
    public func delete(_ name: String, _ client: BanyanHTTPClient) async throws {
        let number = try await entry(name, client).latest!.number
        let draft = RunEvents.Draft(
            type: "workflow.definition.deleted", key: "workflow/\(name)/deleted/\(number)", stream: Self.stream, parentKeys: [Self.versionKey(name, number)],
            payload: .object([(key: "workflow", value: .text(name)), (key: "version", value: .number(String(number)))]))
        do {
            try await append(draft, client)
        } catch let error as BanyanClientError where error.status == 409 {
            // Deleted meanwhile: the same outcome.
        }
        try await refresh(client)
    }

    /// Sets (or, with nil, removes) the workflow's schedule, in force until its next version or
    /// schedule. `text`: the schedule as JSON, checked against the latest version's inputs.
    public func setSchedule(_ name: String, _ text: String?, _ client: BanyanHTTPClient) async throws -> Schedule? {
        let entry = try await entry(name, client)
        let latest = entry.latest!.number
        var schedule: Schedule?
        if let text {
            let definition: WorkflowDefinition
            do { definition = try RunReader.definitions.parse(try await self.definition(name, version: latest, client)) } catch let e as DefinitionError {
                throw CatalogError.definition(e)
            }
            do { schedule = try DefinitionParser.parseSchedule(text, for: definition) } catch { throw CatalogError.definition(error) }
        }
        for _ in 0..<3 {
            let n = (try await refresh(client)[name]?.scheduleChanges ?? 0) + 1
            var members: [(key: String, value: WorkflowValue)] = [
                (key: "workflow", value: .text(name)), (key: "version", value: .number(String(latest))), (key: "change", value: .number(String(n))),
            ]
            members.append((key: "schedule", value: text.map { .text($0) } ?? .null))
            let draft = RunEvents.Draft(
                type: "workflow.schedule.set", key: "workflow/\(name)/schedule/\(n)", stream: Self.stream, parentKeys: [Self.versionKey(name, latest)],
                payload: .object(members))
            do {
                try await append(draft, client)
                try await refresh(client)
                return schedule
            } catch let error as BanyanClientError where error.status == 409 {
                continue
            }
        }
        throw CatalogError.busy(name)
    }

    /// The definitions the workflow's `sub_workflow` tasks name, and theirs, from the latest
    /// uploaded versions (`Engine.children(of:resolve:)` checks names, cycles and depth).
    /// `known`: the catalog as just refreshed (nil: refreshed here).
    public func children(of text: String, _ client: BanyanHTTPClient, known: [String: Entry]? = nil) async throws -> [String: String] {
        let entries: [String: Entry]
        if let known { entries = known } else { entries = try await refresh(client) }
        // Read the texts first (the check itself is synchronous), a name at a time, as deep as
        // sub-workflows may nest.
        var found: [String: String] = [:]
        var frontier = [text]
        for _ in 0...Engine.childDepthMax where !frontier.isEmpty {
            var next: [String] = []
            for parent in frontier {
                guard let definition = try? RunReader.definitions.parse(parent) else { continue }
                for task in definition.tasks {
                    guard case .subWorkflow(let name) = task.kind, found[name] == nil, let entry = entries[name], !entry.deleted, let latest = entry.latest else { continue }
                    let child = try await self.definition(name, version: latest.number, client)
                    found[name] = child
                    next.append(child)
                }
            }
            frontier = next
        }
        return try Engine.children(of: text) { found[$0] }
    }

    private func append(_ draft: RunEvents.Draft, _ client: BanyanHTTPClient) async throws {
        try await client.appendStored(batch: Array(WorkflowValue.array([draft.json]).json.utf8))
    }
}
