import ArgumentParser
import BanyanClient
import Foundation
import Workflow

extension Banyan {
    struct WorkflowCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "workflow",
            abstract: "Workflows (docs/WORKFLOWS.md): check a definition, run it against a server, resume a run.",
            subcommands: [Validate.self, Run.self, Resume.self, Status.self])

        /// Reads a definition file, at most the size limit plus one byte (/dev/zero must not hang).
        static func read(_ file: String) throws -> String {
            let limit = WorkflowLimits().definitionBytesMax
            guard let handle = FileHandle(forReadingAtPath: file) else { throw ValidationError("cannot read \(file)") }
            defer { try? handle.close() }
            let data = try handle.read(upToCount: limit + 1) ?? Data()
            guard let text = String(data: data, encoding: .utf8) else { throw ValidationError("\(file) is not UTF-8 text") }
            return text
        }

        /// Drives a run to its end, printing what happens; exit code 0 only if it completed.
        static func drive(_ engine: Engine, run: String) async throws {
            switch try await engine.drive(run: run) {
            case .completed:
                Console.out("completed")
            case .failed(let task, let error):
                Console.out("failed: \(task): \(error)")
                throw ExitCode.failure
            }
        }

        static func engine(server: String) -> Engine {
            var engine = Engine(client: BanyanHTTPClient(baseURL: server, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"]))
            engine.log = { Console.error("workflow: \($0)") }
            return engine
        }

        struct Run: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Start a run of a definition on the server and drive it to its end: prints the run id first, then how it ended; exit code 0 only if it completed. Uses BANYAN_TOKEN.")

            @Argument(help: "The definition file.") var file: String
            @Option(help: "Server address.") var server = "http://127.0.0.1:7777"
            @Option(name: .customLong("input"), help: "An input as name=value (a string, or JSON for number, boolean, object and array inputs); repeat for several.")
            var inputs: [String] = []
            @Option(help: "The run id (default: a new random one); starting the same id again is the same run.") var run: String?

            func run() async throws {
                try await Banyan.reportingErrors {
                    let text = try WorkflowCommand.read(file)
                    let definition: WorkflowDefinition
                    do { definition = try DefinitionParser.parse(text) } catch {
                        Console.error("\(file):\(error)")
                        throw ExitCode.failure
                    }
                    var given: [String: WorkflowValue] = [:]
                    for pair in inputs {
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
                    let engine = WorkflowCommand.engine(server: server)
                    let runID = try await engine.start(definition: text, inputs: given, run: run)
                    Console.out(runID)
                    try await WorkflowCommand.drive(engine, run: runID)
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
                    Console.out("run \(status.run)  workflow \(status.workflow) (version \(status.version))  \(status.state)")
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
                        let inputs = definition.inputs.map { $0.defaultValue == nil ? "\($0.name) (required)" : $0.name }
                        Console.out(
                            "workflow validate: ok: \(file): \(definition.name), \(definition.tasks.count) tasks (\(definition.tasks.map(\.id).joined(separator: ", "))), inputs: \(inputs.isEmpty ? "none" : inputs.joined(separator: ", "))")
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
