import ArgumentParser
import Foundation
import Workflow

extension Banyan {
    struct WorkflowCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "workflow",
            abstract: "Workflow definitions (docs/WORKFLOWS.md). The engine that runs them is not built yet; definitions can be checked now.",
            subcommands: [Validate.self])

        struct Validate: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Check a YAML workflow definition: fields, types, templates, start_when conditions, task references, cycles. Exit code 0 only when valid.")

            @Argument(help: "The definition file.") var file: String

            func run() async throws {
                try await Banyan.reportingErrors {
                    // One byte past the limit is enough to refuse (and /dev/zero must not hang).
                    let limit = WorkflowLimits().definitionBytesMax
                    guard let handle = FileHandle(forReadingAtPath: file) else { throw ValidationError("cannot read \(file)") }
                    defer { try? handle.close() }
                    let data = try handle.read(upToCount: limit + 1) ?? Data()
                    guard let text = String(data: data, encoding: .utf8) else { throw ValidationError("\(file) is not UTF-8 text") }
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
