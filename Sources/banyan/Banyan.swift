import ArgumentParser
import EventLog

/// The `banyan` command line: one data directory, sensible defaults, one clear line on error.
@main
struct Banyan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "banyan",
        abstract: "Banyan: a durable causal event log.",
        subcommands: [Serve.self, Emit.self, Get.self, Query.self, Import.self, Export.self, Status.self, Verify.self, Promote.self, Snapshot.self, Restore.self, Compact.self, WorkflowCommand.self, RunCommand.self, ClusterCommand.self])

    /// Runs a subcommand body, turning any error into one line on stderr and exit code 1
    /// (ArgumentParser's own usage errors keep their exit code 64).
    static func reportingErrors(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as ExitCode {
            throw error
        } catch {
            Console.error("banyan: \(Self.describe(error))")
            throw ExitCode.failure
        }
    }

    static func describe(_ error: any Error) -> String {
        if let log = error as? LogError {
            if log.cause?.code == .locked {
                return "the data directory is in use by another process (is `banyan serve` running on it?): \(log.message)"
            }
            return log.description
        }
        return "\(error)"
    }
}

/// Options every store-opening command shares.
struct DataDirOptions: ParsableArguments {
    @Option(name: .long, help: "Data directory of the store.")
    var dataDir = "./banyan-data"
}
