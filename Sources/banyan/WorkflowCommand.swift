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
                    let text: String
                    do {
                        text = try String(contentsOfFile: file, encoding: .utf8)
                    } catch {
                        throw ValidationError("cannot read \(file): \(error.localizedDescription)")
                    }
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
