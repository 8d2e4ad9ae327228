import ArgumentParser
import BanyanClient
import Foundation
import Synchronization
import Logging
import BanyanServer
import Workflow
import WorkflowServer

extension Banyan {
    struct WorkflowCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "workflow",
            abstract: "Workflows (docs/WORKFLOWS.md): check a definition, start a run, drive runs, signal and inspect them.",
            subcommands: [
                Validate.self, Run.self, EngineCommand.self, Signal.self, Cancel.self, Status.self, Resume.self, Upload.self, List.self, Show.self, Delete.self,
                Execute.self,
            ])

        /// Reads a definition file, at most the size limit plus one byte (/dev/zero must not hang).
        static func read(_ file: String) throws -> String {
            let limit = WorkflowLimits().definitionBytesMax
            guard let handle = FileHandle(forReadingAtPath: file) else { throw ValidationError("cannot read \(file)") }
            defer { try? handle.close() }
            let data = try handle.read(upToCount: limit + 1) ?? Data()
            guard let text = String(data: data, encoding: .utf8) else { throw ValidationError("\(file) is not UTF-8 text") }
            return text
        }

        /// The definitions `text`'s sub_workflow tasks name, and theirs: `<name>.yaml` (or `.yml`)
        /// beside `file`.
        static func children(of text: String, beside file: String) throws -> [String: String] {
            let directory = URL(fileURLWithPath: file).deletingLastPathComponent()
            return try Engine.children(of: text) { name in
                for ext in ["yaml", "yml"] {
                    let path = directory.appendingPathComponent("\(name).\(ext)").path
                    if FileManager.default.fileExists(atPath: path) { return try read(path) }
                }
                return nil
            }
        }

        /// Drives a run to its end, printing what happens; exit code 0 only if it completed.
        static func drive(_ engine: Engine, run: String) async throws {
            switch try await engine.drive(run: run) {
            case .completed:
                Console.out("completed")
            case .failed(let task, let error):
                Console.out("failed: \(task): \(error)")
                throw ExitCode.failure
            case .cancelled(let reason):
                Console.out("cancelled" + (reason.isEmpty ? "" : ": \(reason)"))
                throw ExitCode.failure
            }
        }

        static func engine(server: String, tasksMax: Int = Engine.tasksMaxDefault, pollInterval: Duration = .milliseconds(100), engineID: String? = nil) -> Engine {
            var engine = Engine(
                client: BanyanHTTPClient(baseURL: server, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"]), tasksMax: tasksMax, pollInterval: pollInterval, engineID: engineID,
                log: { Console.error("workflow: \($0)") })
            engine.functions = Engine.builtinFunctions
            return engine
        }

        /// Follows a run an engine drives, printing each task's changes as its events arrive
        /// (`GET /v1/stream` of the run's stream, resumed with Last-Event-ID after a dropped
        /// connection), until it ends; exit code 0 only if it completed.
        static func watch(_ engine: Engine, run: String) async throws {
            guard let bytes = try await engine.client.event(key: RunEvents.runKey(run, "requested")) else { throw Engine.EngineError.unknownRun(run) }
            let request = try JSONText.parse(bytes)
            var after: UInt64 = 0
            if case .number(let n)? = request["id"], let id = UInt64(n), id > 0 { after = id - 1 }
            let started = OnceSet()
            let hint = Task {
                try await Task.sleep(for: .seconds(5))
                if !started.isSet {
                    Console.error("workflow: no engine has started run \(run) yet: is `banyan workflow engine --server URL` or `banyan serve --workflows` running? (--drive drives it here)")
                }
            }
            defer { hint.cancel() }
            try await follow(engine.client.stream(after: after, stream: RunEvents.stream(run)), started: started)
        }

        /// Prints a line per task change of a run's event frames until the run ends; exit code 0
        /// only if it completed.
        static func follow(_ frames: AsyncThrowingStream<StreamFrame, any Error>, started: OnceSet = OnceSet()) async throws {
            for try await frame in frames where frame.event == "event" {
                guard let event = try? JSONText.parse(frame.data), let type = event["type"]?.stringValue else { continue }
                let payload = event["payload"] ?? .null
                let attempt = payload["attempt"]?.intValue ?? 1
                let task = payload["task"]?.stringValue ?? "?"
                let compensation = payload["compensation"] != nil
                switch type {
                case "workflow.run.started": started.set()
                case "workflow.task.started" where !compensation: Console.out("\(task): started" + (attempt > 1 ? " (attempt \(attempt))" : ""))
                case "workflow.task.completed" where !compensation: Console.out("\(task): completed" + (attempt > 1 ? " (attempt \(attempt))" : ""))
                case "workflow.task.failed" where !compensation:
                    Console.out("\(task): failed" + (attempt > 1 ? " (attempt \(attempt))" : "") + ": \(payload["error"]?.stringValue ?? "?")")
                case "workflow.task.cancelled": Console.out("\(task): cancelled")
                case "workflow.task.compensated", "workflow.task.compensation_failed": Console.out("\(task): \(type.dropFirst("workflow.task.".count))")
                case "workflow.run.completed":
                    Console.out("completed")
                    return
                case "workflow.run.failed":
                    Console.out("failed: \(payload["task"]?.stringValue.map { "\($0): " } ?? "")\(payload["error"]?.stringValue ?? "?")")
                    throw ExitCode.failure
                case "workflow.run.cancelled":
                    let reason = payload["reason"]?.stringValue ?? ""
                    Console.out("cancelled" + (reason.isEmpty ? "" : ": \(reason)"))
                    throw ExitCode.failure
                default: break
                }
            }
            throw ValidationError("the server closed the run's stream before the run ended")
        }

        /// `--input name=value` options: a string input takes the text, the others JSON.
        static func inputs(_ pairs: [String], of definition: WorkflowDefinition) throws -> [String: WorkflowValue] {
            var given: [String: WorkflowValue] = [:]
            for pair in pairs {
                guard let eq = pair.firstIndex(of: "=") else { throw ValidationError("--input takes name=value, not \"\(pair)\"") }
                let name = String(pair[..<eq])
                let raw = String(pair[pair.index(after: eq)...])
                guard let spec = definition.inputs.first(where: { $0.name == name }) else {
                    throw ValidationError("--input \(name): the workflow has no such input (it takes \(definition.inputs.map(\.name).joined(separator: ", ")))")
                }
                if spec.type == .string {
                    given[name] = .text(raw)
                } else {
                    do { given[name] = try JSONText.parse(Array(raw.utf8)) } catch { throw ValidationError("--input \(name): \(spec.type.rawValue) inputs are JSON: \(error)") }
                }
            }
            return given
        }

        /// Set once, read from another task.
        final class OnceSet: Sendable {
            private let value = Mutex(false)
            func set() { value.withLock { $0 = true } }
            var isSet: Bool { value.withLock { $0 } }
        }

        struct Run: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Start a run of a definition on the server: prints the run id. An engine (banyan workflow engine, banyan serve --workflows) drives it; --wait follows it to its end, --drive drives it in this process. Uses BANYAN_TOKEN.")

            @Argument(help: "The definition file.") var file: String
            @Option(help: "Server address.") var server = "http://127.0.0.1:7777"
            @Option(name: .customLong("input"), help: "An input as name=value (a string, or JSON for number, boolean, object and array inputs); repeat for several.")
            var inputs: [String] = []
            @Option(help: "The run id (default: a new random one); starting the same id again is the same run.") var run: String?
            @Flag(help: "Follow the run, printing each task's changes, until it ends; exit code 0 only if it completed.") var wait = false
            @Flag(help: "Drive the run in this process, no engine needed (implies --wait).") var drive = false

            func run() async throws {
                try await Banyan.reportingErrors {
                    let text = try WorkflowCommand.read(file)
                    let definition: WorkflowDefinition
                    do { definition = try DefinitionParser.parse(text) } catch {
                        Console.error("\(file):\(error)")
                        throw ExitCode.failure
                    }
                    let given = try WorkflowCommand.inputs(inputs, of: definition)
                    let engine = WorkflowCommand.engine(server: server)
                    let children = try WorkflowCommand.children(of: text, beside: file)
                    let runID = try await engine.start(definition: text, inputs: given, run: run, children: children)
                    Console.out(runID)
                    if drive {
                        try await WorkflowCommand.drive(engine, run: runID)
                    } else if wait {
                        try await WorkflowCommand.watch(engine, run: runID)
                    }
                }
            }
        }

        struct Status: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Where a run stands, from its events: its state, and each task's state, attempts, duration and error. Records nothing.")

            @Argument(help: "The run id.") var run: String
            @Option(help: "Server address.") var server = "http://127.0.0.1:7777"

            func run() async throws {
                try await Banyan.reportingErrors {
                    let status = try await WorkflowCommand.engine(server: server).status(run: run)
                    Console.out("run \(status.run)  workflow \(status.workflow) (version \(status.version))  \(status.state)" + (status.error.map { ": \($0)" } ?? ""))
                    let width = max(4, status.tasks.map(\.id.count).max() ?? 4)
                    func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
                    Console.out("\(pad("task", width))  \(pad("state", 12))  attempts  duration")
                    for task in status.tasks {
                        let duration = task.durationMs.map { "\($0) ms" } ?? "-"
                        var line = "\(pad(task.id, width))  \(pad(task.state, 12))  \(pad(String(task.attempts), 8))  \(duration)"
                        if let error = task.error { line += "  \(error)" }
                        Console.out(line)
                    }
                }
            }
        }

        struct EngineCommand: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "engine",
                abstract: "The long-running engine: drives every run in the log that has not ended, then every run requested later, until stopped. Several may run against one server (docs/WORKFLOWS.md). Uses BANYAN_TOKEN.")

            @Option(help: "Server address.") var server = "http://127.0.0.1:7777"
            @Option(help: "Runs driven at once, those waiting on timers and signals included; the others wait in a queue.") var maxConcurrentRuns = 1_000
            @Option(help: "Task attempts doing work (shell, http, swift) at once across all runs; timers and waits for signals hold none.")
            var maxConcurrentTasks = Engine.tasksMaxDefault
            @Option(help: "How often to look for new runs and signals, e.g. 100ms.") var pollInterval = "100ms"
            @Option(help: "An engine whose heartbeats stop for this long is taken for stopped, and other engines take over its attempts; it records one every third of it. E.g. 15s.")
            var heartbeatTTL = "15s"
            @Option(help: "This engine's name, recorded in its claims (default: a new random one). One that stays the same across restarts takes over its own unfinished attempts at once instead of after --heartbeat-ttl; never run two engines with the same name at once.")
            var engineID: String?
            @Option(help: "Also serve the workflow API (/v1/workflows, /v1/runs, /healthz) on HOST:PORT, e.g. 127.0.0.1:7790. Callers' tokens are passed on to --server.")
            var listen: String?

            func run() async throws {
                try await Banyan.reportingErrors {
                    var config: ServerConfiguration?
                    if let listen {
                        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65_535).contains(port) else {
                            throw ValidationError("--listen: \"\(listen)\" is not HOST:PORT")
                        }
                        var c = ServerConfiguration()
                        c.host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                        c.port = port
                        config = c
                    }
                    guard maxConcurrentRuns >= 1, maxConcurrentTasks >= 1 else { throw ValidationError("--max-concurrent-runs and --max-concurrent-tasks are at least 1") }
                    guard let poll = Duration.parse(pollInterval), poll > .zero else { throw ValidationError("--poll-interval: \"\(pollInterval)\" is not a duration like 100ms") }
                    if let engineID, !WorkflowLimits.isName(engineID, bytesMax: WorkflowLimits.runIDBytesMax) {
                        throw ValidationError("--engine-id: 1-64 letters, digits, _ and -")
                    }
                    var service = EngineService(engine: WorkflowCommand.engine(server: server, tasksMax: maxConcurrentTasks, pollInterval: poll, engineID: engineID))
                    service.runsMax = maxConcurrentRuns
                    service.pollInterval = poll
                    guard let ttl = Duration.parse(heartbeatTTL), ttl >= .seconds(1) else { throw ValidationError("--heartbeat-ttl: \"\(heartbeatTTL)\" is not a duration of at least 1s") }
                    service.heartbeatTTL = ttl
                    let engineService = service
                    guard let config else {
                        try await engineService.run()
                        return
                    }
                    if !config.isLoopback {
                        // The API checks no token itself: it passes the caller's on. Open to a
                        // network in front of a server without tokens, anyone could run programs.
                        var open = false
                        do {
                            _ = try await BanyanHTTPClient(baseURL: server).get(path: "/v1/status")
                            open = true
                        } catch let error as BanyanClientError where error.status == 401 {
                        } catch {
                            throw ValidationError("--listen \(listen ?? ""): cannot ask \(server) whether it needs tokens: \(error)")
                        }
                        if open {
                            throw ValidationError(
                                "refusing to serve the workflow API on \(config.host): \(server) answers without a token, so anyone who reaches this port could run workflows; listen on 127.0.0.1 or give the server tokens (--tokens-file)")
                        }
                    }
                    let api = WorkflowAPI(upstream: WorkflowAPI.Upstream(server), engineMetrics: service.engine.metrics, views: service.views)
                    let engineID = service.engine.engineID
                    let app = BanyanServer.application(
                        routes: api.routes + [WorkflowAPI.health(engine: engineID), api.metricsRoute], config: config, logger: Logger(label: "banyan.workflow"),
                        onServerRunning: { port in Console.error("banyan: workflow engine \(engineID) serving its API on http://\(config.host):\(port)") })
                    // The API stops on SIGINT/SIGTERM (it drains requests first); then the engine.
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { try await app.runService() }
                        group.addTask { try await engineService.run() }
                        try await group.next()
                        group.cancelAll()
                    }
                }
            }
        }

        struct Signal: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Send a signal to a run: its wait_for_signal task of that name completes with the payload as its output. Sending it again is a no-op. Uses BANYAN_TOKEN.")

            @Argument(help: "The run id.") var run: String
            @Argument(help: "The signal's name.") var name: String
            @Option(help: "The payload, JSON (default: null).") var payload: String?
            @Option(help: "Server address.") var server = "http://127.0.0.1:7777"

            func run() async throws {
                try await Banyan.reportingErrors {
                    var value = WorkflowValue.null
                    if let payload {
                        do { value = try JSONText.parse(Array(payload.utf8)) } catch { throw ValidationError("--payload is JSON: \(error)") }
                    }
                    let sent = try await WorkflowCommand.engine(server: server).signal(run: run, name: name, payload: value)
                    Console.out(sent ? "sent \(name) to run \(run)" : "\(name) was already sent to run \(run) with this payload")
                }
            }
        }

        struct Cancel: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Cancel a run: the engine driving it stops its running attempts (their processes killed), records them cancelled, compensates what completed, and records the run cancelled. Asking again is a no-op. Uses BANYAN_TOKEN.")

            @Argument(help: "The run id.") var run: String
            @Option(help: "Why (recorded with the request and the run's end).") var reason = ""
            @Option(help: "Server address.") var server = "http://127.0.0.1:7777"

            func run() async throws {
                try await Banyan.reportingErrors {
                    let new = try await WorkflowCommand.engine(server: server).cancel(run: run, reason: reason)
                    Console.out(new ? "asked to cancel run \(run)" : "run \(run) was already asked to cancel")
                }
            }
        }

        struct Resume: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Drive a run that was started before (after a crash, say) from its events to its end; exit code 0 only if it completed.")

            @Argument(help: "The run id.") var run: String
            @Option(help: "Server address.") var server = "http://127.0.0.1:7777"

            func run() async throws {
                try await Banyan.reportingErrors {
                    try await WorkflowCommand.drive(WorkflowCommand.engine(server: server), run: run)
                }
            }
        }

        struct Validate: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Check a YAML workflow definition: fields, types, templates, start_when conditions, task references, cycles. Exit code 0 only when valid.")

            @Argument(help: "The definition file.") var file: String

            func run() async throws {
                try await Banyan.reportingErrors {
                    let text = try WorkflowCommand.read(file)
                    do {
                        let definition = try DefinitionParser.parse(text)
                        let children = try WorkflowCommand.children(of: text, beside: file)
                        let inputs = definition.inputs.map { $0.defaultValue == nil ? "\($0.name) (required)" : $0.name }
                        Console.out(
                            "workflow validate: ok: \(file): \(definition.name), \(definition.tasks.count) tasks (\(definition.tasks.map(\.id).joined(separator: ", "))), inputs: \(inputs.isEmpty ? "none" : inputs.joined(separator: ", "))"
                                + (children.isEmpty ? "" : ", sub-workflows: \(children.keys.sorted().joined(separator: ", "))"))
                    } catch {
                        // file:line:column: as compilers write it, so editors can jump there.
                        Console.error("\(file):\(error)")
                        throw ExitCode.failure
                    }
                }
            }
        }
    }
}
