import ArgumentParser
import BanyanClient
import Foundation
import Workflow

/// The commands that drive workflows through the workflow API (docs/WORKFLOWS.md, "The workflow
/// API"): `banyan workflow upload|list|show|delete|execute` and `banyan run ...`. They talk to
/// `--server` (a `serve --workflows` or a `workflow engine --listen`), with BANYAN_TOKEN, and
/// print a table, or the API's JSON with `--json`.
struct APIOptions: ParsableArguments {
    @Option(help: "The workflow API: a server started with --workflows, or a workflow engine's --listen address.")
    var server = "http://127.0.0.1:7777"
    @Flag(help: "Print the API's JSON answer instead of a table.") var json = false

    var client: BanyanHTTPClient { BanyanHTTPClient(baseURL: server, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"]) }

    /// Sends one request; prints the answer with `--json` (then returns nil), else returns it.
    func call(_ method: String, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json", headers: [String: String] = [:]) async throws
        -> WorkflowValue?
    {
        let bytes = try await client.request(method, path: path, body: body, contentType: contentType, headers: headers)
        if json {
            Console.write(bytes)
            return nil
        }
        return try JSONText.parse(bytes)
    }

    /// POSTs a request that starts a run (an execute, a retry) and prints the run's id (or, with
    /// `--json`, the answer); with `watch`, then follows it.
    func startAndWatch(_ path: String, body: [UInt8]?, headers: [String: String] = [:], watch: Bool) async throws {
        let bytes = try await client.request("POST", path: path, body: body, headers: headers)
        if json { Console.write(bytes) }
        let run = try JSONText.parse(bytes)["run"]?.stringValue ?? ""
        if !json { Console.out(run) }
        if watch { try await self.watch(run) }
    }

    /// Follows `/v1/runs/{run}/watch`, a line per task change, to the run's end; exit code 0
    /// only if it completed.
    func watch(_ run: String) async throws {
        try await Banyan.WorkflowCommand.follow(client.frames(path: "/v1/runs/\(escape(run))/watch", after: nil))
    }
}

/// A path segment, percent-encoded.
func escape(_ segment: String) -> String {
    segment.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_."))) ?? segment
}

/// Rows under a header, columns padded to their widest cell.
func table(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    for row in [header] + rows {
        let cells = row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count) }
        Console.out(cells.joined(separator: "  "))
    }
}

extension WorkflowValue {
    /// The value as a table cell: text as is, null as `-`, anything else as JSON.
    var cell: String {
        switch self {
        case .null: "-"
        case .string: stringValue ?? json
        default: json
        }
    }
}

extension Banyan.WorkflowCommand {
    struct Upload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a definition through the workflow API: a changed definition becomes the workflow's next version.")
        @Argument(help: "The definition file.") var file: String
        @OptionGroup var api: APIOptions

        func run() async throws {
            try await Banyan.reportingErrors {
                let text = try Banyan.WorkflowCommand.read(file)
                guard let answer = try await api.call("POST", "/v1/workflows", body: Array(text.utf8), contentType: "application/yaml") else { return }
                let created = answer["created"] == .bool(true)
                Console.out("workflow \(answer["workflow"]?.cell ?? "?") version \(answer["version"]?.cell ?? "?")" + (created ? "" : " (unchanged)"))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The uploaded workflows, with their latest version and active runs.")
        @OptionGroup var api: APIOptions

        func run() async throws {
            try await Banyan.reportingErrors {
                guard let answer = try await api.call("GET", "/v1/workflows") else { return }
                table(
                    ["NAME", "VERSION", "VERSIONS", "ACTIVE", "UPLOADED"],
                    (answer["workflows"]?.arrayValue ?? []).map { w in ["name", "version", "versions", "active_runs", "uploaded_at"].map { w[$0]?.cell ?? "-" } })
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A workflow's versions; --definition prints a version's YAML.")
        @Argument(help: "The workflow's name.") var name: String
        @Flag(help: "Print the definition's text (the latest version, or --version).") var definition = false
        @Option(help: "The version to print with --definition.") var version: Int?
        @OptionGroup var api: APIOptions

        func run() async throws {
            try await Banyan.reportingErrors {
                guard let answer = try await api.call("GET", "/v1/workflows/\(escape(name))") else { return }
                let versions = answer["versions"]?.arrayValue ?? []
                if definition {
                    guard let chosen = versions.first(where: { version == nil || $0["version"]?.intValue == version }) else {
                        throw ValidationError("workflow \(name) has no version \(version ?? 0)")
                    }
                    Console.write(Array((chosen["definition"]?.stringValue ?? "").utf8))
                    return
                }
                table(["VERSION", "HASH", "UPLOADED"], versions.map { v in ["version", "hash", "uploaded_at"].map { v[$0]?.cell ?? "-" } })
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a workflow (refused while runs of it are active, unless --force). Its runs stay in the history.")
        @Argument(help: "The workflow's name.") var name: String
        @Flag(help: "Delete it even while runs of it are active (they go on).") var force = false
        @OptionGroup var api: APIOptions

        func run() async throws {
            try await Banyan.reportingErrors {
                guard try await api.call("DELETE", "/v1/workflows/\(escape(name))" + (force ? "?force=true" : "")) != nil else { return }
                Console.out("deleted workflow \(name)")
            }
        }
    }

    struct Execute: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a run of an uploaded workflow's latest version: prints the run id; --watch follows it to its end (exit code 0 only if it completed).")
        @Argument(help: "The workflow's name.") var name: String
        @Option(name: .customLong("input"), help: "An input as name=value (a string, or JSON for number, boolean, object and array inputs); repeat for several.")
        var inputs: [String] = []
        @Option(help: "A retried execute with the same key starts no second run.") var idempotencyKey: String?
        @Flag(help: "Follow the run, a line per task change, until it ends.") var watch = false
        @OptionGroup var api: APIOptions

        func run() async throws {
            try await Banyan.reportingErrors {
                var given: [String: WorkflowValue] = [:]
                if !inputs.isEmpty {
                    // Input types come from the definition: a string input takes text, others JSON.
                    let shown = try JSONText.parse(try await api.client.get(path: "/v1/workflows/\(escape(name))"))
                    let text = shown["versions"]?.arrayValue?.first?["definition"]?.stringValue ?? ""
                    given = try Banyan.WorkflowCommand.inputs(inputs, of: try DefinitionParser.parse(text))
                }
                let body = WorkflowValue.object([(key: "inputs", value: .object(given.keys.sorted().map { (key: $0, value: given[$0]!) }))]).json
                try await api.startAndWatch(
                    "/v1/workflows/\(escape(name))/runs", body: Array(body.utf8), headers: idempotencyKey.map { ["Idempotency-Key": $0] } ?? [:], watch: watch)
            }
        }
    }
}

extension Banyan {
    struct RunCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "Workflow runs through the workflow API (docs/WORKFLOWS.md): history, state, events, pause, resume, cancel, retry, signals. Uses BANYAN_TOKEN.",
            subcommands: [List.self, Status.self, Events.self, Pause.self, Resume.self, Cancel.self, Retry.self, Signal.self])

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "The run history, newest first, with filters; pages with --cursor.")
            @Option(help: "Only runs in these states (comma-separated: pending, running, paused, cancelling, completed, failed, cancelled).") var status: String?
            @Option(help: "Only runs of this workflow.") var workflow: String?
            @Option(help: "Runs per page (1-1000).") var limit = 50
            @Option(help: "The next page: the cursor a previous page printed.") var cursor: String?
            @Flag(help: "Oldest first.") var oldestFirst = false
            @OptionGroup var api: APIOptions

            func run() async throws {
                try await Banyan.reportingErrors {
                    var query = ["limit=\(limit)"]
                    if let status { query.append("status=" + escape(status).replacingOccurrences(of: "%2C", with: ",")) }
                    if let workflow { query.append("workflow=" + escape(workflow)) }
                    if let cursor { query.append("cursor=" + escape(cursor)) }
                    if oldestFirst { query.append("order=asc") }
                    guard let answer = try await api.call("GET", "/v1/runs?" + query.joined(separator: "&")) else { return }
                    table(
                        ["RUN", "WORKFLOW", "VERSION", "STATE", "REQUESTED", "DURATION_MS", "ERROR"],
                        (answer["runs"]?.arrayValue ?? []).map { r in ["run", "workflow", "version", "state", "requested_at", "duration_ms", "error"].map { r[$0]?.cell ?? "-" } })
                    let total = answer["total"]?.cell ?? "?"
                    if let next = answer["next_cursor"]?.stringValue {
                        Console.error("\(total) runs; next page: --cursor \(next)")
                    } else {
                        Console.error("\(total) runs")
                    }
                }
            }
        }

        struct Status: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "A run's state, progress and tasks; --watch then follows it to its end.")
            @Argument(help: "The run id.") var run: String
            @Flag(help: "Then follow the run, a line per task change, until it ends.") var watch = false
            @OptionGroup var api: APIOptions

            func run() async throws {
                try await Banyan.reportingErrors {
                    if let view = try await api.call("GET", "/v1/runs/\(escape(run))") {
                        let p = view["progress"] ?? .null
                        Console.out(
                            "run \(run)  workflow \(view["workflow"]?.cell ?? "?") (version \(view["version"]?.cell ?? "-"))  \(view["state"]?.cell ?? "?")"
                                + (view["error"]?.stringValue.map { ": \($0)" } ?? ""))
                        Console.out(
                            "tasks: \(p["total"]?.cell ?? "?") total, \(p["completed"]?.cell ?? "?") completed, \(p["running"]?.cell ?? "?") running, \(p["failed"]?.cell ?? "?") failed, \(p["pending"]?.cell ?? "?") pending, \(p["skipped"]?.cell ?? "?") skipped")
                        let tasks = try JSONText.parse(try await api.client.get(path: "/v1/runs/\(escape(run))/tasks"))["tasks"]?.arrayValue ?? []
                        table(
                            ["TASK", "STATE", "ATTEMPTS", "DURATION_MS", "ERROR"],
                            tasks.map { t in
                                let attempts = t["attempts"]?.arrayValue ?? []
                                return [t["id"]?.cell ?? "?", t["state"]?.cell ?? "?", String(attempts.count), attempts.last?["duration_ms"]?.cell ?? "-", t["error"]?.cell ?? "-"]
                            })
                    }
                    if watch { try await api.watch(run) }
                }
            }
        }

        struct Events: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "A run's events in log order: id, type, key (--json: the events' JSON).")
            @Argument(help: "The run id.") var run: String
            @OptionGroup var api: APIOptions

            func run() async throws {
                try await Banyan.reportingErrors {
                    var after: UInt64 = 0
                    var rows: [[String]] = []
                    while true {
                        let bytes = try await api.client.get(path: "/v1/runs/\(escape(run))/events?limit=1000&after=\(after)")
                        let page = try JSONText.parse(bytes)
                        for event in page["events"]?.arrayValue ?? [] {
                            if api.json { Console.out(event.json) } else { rows.append(["id", "type", "key"].map { event[$0]?.cell ?? "-" }) }
                        }
                        guard let next = page["next"]?.intValue.map(UInt64.init), let last = page["last_id"]?.intValue.map(UInt64.init), next > after, next < last else { break }
                        after = next
                    }
                    if !api.json { table(["ID", "TYPE", "KEY"], rows) }
                }
            }
        }

        /// A command's answer as a line: `done` when it was recorded, `already` when it had been.
        static func said(_ answer: WorkflowValue?, _ done: String, _ already: String) {
            guard let answer else { return }
            Console.out(answer["recorded"] == .bool(true) ? done : already)
        }

        struct Pause: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Pause a run: no new task starts; running ones finish (--now: stop them too, to run again on resume).")
            @Argument(help: "The run id.") var run: String
            @Flag(help: "Also stop the running tasks' work (shell, http, swift); they run again once resumed.") var now = false
            @OptionGroup var api: APIOptions

            func run() async throws {
                try await Banyan.reportingErrors {
                    RunCommand.said(try await api.call("POST", "/v1/runs/\(escape(run))/pause" + (now ? "?now=true" : "")), "paused \(run)", "run \(run) was already paused")
                }
            }
        }

        struct Resume: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Resume a paused run where it stopped.")
            @Argument(help: "The run id.") var run: String
            @OptionGroup var api: APIOptions

            func run() async throws {
                try await Banyan.reportingErrors {
                    RunCommand.said(try await api.call("POST", "/v1/runs/\(escape(run))/resume"), "resumed \(run)", "run \(run) was not paused")
                }
            }
        }

        struct Cancel: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Cancel a run: its running tasks stop, completed ones are compensated, it ends cancelled.")
            @Argument(help: "The run id.") var run: String
            @Option(help: "Why, recorded with the cancel.") var reason: String?
            @OptionGroup var api: APIOptions

            func run() async throws {
                try await Banyan.reportingErrors {
                    let body = reason.map { Array(WorkflowValue.object([(key: "reason", value: .text($0))]).json.utf8) }
                    RunCommand.said(try await api.call("POST", "/v1/runs/\(escape(run))/cancel", body: body), "cancelling \(run)", "run \(run) was already asked to cancel")
                }
            }
        }

        struct Retry: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Run a failed run again from its failed tasks, keeping the outputs of those that completed: prints the new run's id.")
            @Argument(help: "The failed run's id.") var run: String
            @Flag(help: "Follow the new run, a line per task change, until it ends.") var watch = false
            @OptionGroup var api: APIOptions

            func run() async throws {
                try await Banyan.reportingErrors {
                    try await api.startAndWatch("/v1/runs/\(escape(run))/retry", body: nil, watch: watch)
                }
            }
        }

        struct Signal: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Send a signal to a run (a wait_for_signal task waiting for its name completes with the payload).")
            @Argument(help: "The run id.") var run: String
            @Argument(help: "The signal's name.") var name: String
            @Option(help: "The payload, JSON.") var payload = "null"
            @OptionGroup var api: APIOptions

            func run() async throws {
                try await Banyan.reportingErrors {
                    do { _ = try JSONText.parse(Array(payload.utf8)) } catch { throw ValidationError("--payload is JSON: \(error)") }
                    RunCommand.said(
                        try await api.call("POST", "/v1/runs/\(escape(run))/signals/\(escape(name))", body: Array(payload.utf8)), "sent \(name) to run \(run)",
                        "\(name) was already sent to run \(run) with this payload")
                }
            }
        }
    }
}
