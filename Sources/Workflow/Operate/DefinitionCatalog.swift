import BanyanClient

/// Uploaded workflow definitions, versioned, kept as events in the stream `workflow_definitions`
/// (docs/WORKFLOWS.md, "The workflow API"): an upload is `workflow.definition.uploaded` keyed
/// `workflow/<name>/version/<n>`, a delete `workflow.definition.deleted` keyed
/// `workflow/<name>/deleted/<n>` (n: the latest version then). Nothing is kept besides the log:
/// every call reads the stream (a few events per version).
public struct DefinitionCatalog: Sendable {
    public let client: BanyanHTTPClient
    public static let stream = "workflow_definitions"

    public init(client: BanyanHTTPClient) {
        self.client = client
    }

    public struct Version: Sendable, Hashable {
        public var number: Int
        /// `RunEvents.version(of:)` of the text: what runs of this version carry as `version`.
        public var hash: String
        public var definition: String
        public var uploadedAtUnixNano: Int64
    }

    public struct Entry: Sendable {
        public var name: String
        /// Oldest first.
        public var versions: [Version] = []
        /// Deleted after its latest version was uploaded.
        public var deleted = false
        public var latest: Version? { versions.last }
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

    /// Every workflow ever uploaded, by name (deleted ones too: their version numbers go on).
    public func read() async throws -> [String: Entry] {
        var entries: [String: Entry] = [:]
        var after: UInt64 = 0
        while true {
            let page: (events: [RunEvents.Recorded], next: UInt64, last: UInt64)
            do { page = try RunEvents.page(try await client.page(after: after, limit: 10_000, stream: Self.stream)) } catch let e as JSONText.Error {
                throw Engine.EngineError.log("\(e)")
            }
            for event in page.events {
                guard let name = event.payload["workflow"]?.stringValue, let number = event.payload["version"]?.intValue else { continue }
                switch event.type {
                case "workflow.definition.uploaded":
                    guard let text = event.payload["definition"]?.stringValue else { continue }
                    entries[name, default: Entry(name: name)].versions.append(
                        Version(number: number, hash: RunEvents.version(of: text), definition: text, uploadedAtUnixNano: event.timeUnixNano))
                    entries[name]!.deleted = false
                case "workflow.definition.deleted":
                    entries[name]?.deleted = true
                default: break
                }
            }
            guard page.next > after, page.next < page.last else { return entries }
            after = page.next
        }
    }

    /// The workflow, unless unknown or deleted.
    public func entry(_ name: String) async throws -> Entry {
        guard let entry = try await read()[name], !entry.deleted, entry.latest != nil else { throw CatalogError.unknownWorkflow(name) }
        return entry
    }

    /// Validates `text` and records it as the workflow's next version, unless its latest
    /// version has the same text (then that one is returned, `created` false: uploading the same
    /// file twice is one version).
    public func upload(_ text: String) async throws -> (name: String, version: Version, created: Bool) {
        let definition: WorkflowDefinition
        do { definition = try RunReader.definitions.parse(text) } catch { throw CatalogError.definition(error) }
        let name = definition.name
        // Two uploads at once both try the same next key; the log takes one (409 for the other),
        // which then reads again.
        for _ in 0..<3 {
            let entry = try await read()[name]
            if let latest = entry?.latest, entry?.deleted == false, latest.definition == text { return (name, latest, false) }
            let number = (entry?.latest?.number ?? 0) + 1
            let draft = RunEvents.Draft(
                type: "workflow.definition.uploaded", key: "workflow/\(name)/version/\(number)", stream: Self.stream, parentKeys: [],
                payload: .object([(key: "workflow", value: .text(name)), (key: "version", value: .number(String(number))), (key: "definition", value: .text(text))]))
            do {
                try await append(draft)
                return (name, Version(number: number, hash: RunEvents.version(of: text), definition: text, uploadedAtUnixNano: Engine.nowUnixNano()), true)
            } catch let error as BanyanClientError where error.status == 409 {
                continue
            }
        }
        throw CatalogError.busy(name)
    }

    /// Records the workflow's deletion. Its runs stay in the log (and in the run history);
    /// uploading it again starts at the next version number.
    public func delete(_ name: String) async throws {
        let entry = try await entry(name)
        let number = entry.latest!.number
        let draft = RunEvents.Draft(
            type: "workflow.definition.deleted", key: "workflow/\(name)/deleted/\(number)", stream: Self.stream, parentKeys: ["workflow/\(name)/version/\(number)"],
            payload: .object([(key: "workflow", value: .text(name)), (key: "version", value: .number(String(number)))]))
        do {
            try await append(draft)
        } catch let error as BanyanClientError where error.status == 409 {
            // Deleted meanwhile: the same outcome.
        }
    }

    /// The definitions the workflow's `sub_workflow` tasks name, and theirs, from the latest
    /// uploaded versions (`Engine.children(of:resolve:)` checks names, cycles and depth).
    public func children(of text: String, in entries: [String: Entry]) throws -> [String: String] {
        try Engine.children(of: text) { name in
            guard let entry = entries[name], !entry.deleted else { return nil }
            return entry.latest?.definition
        }
    }

    private func append(_ draft: RunEvents.Draft) async throws {
        try await client.appendStored(batch: Array(WorkflowValue.array([draft.json]).json.utf8))
    }
}
