import ArgumentParser
import EventLog
import Foundation

extension Banyan {
    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import events from JSONL or .jsonl.zst (the dataset format; parents by key or id). Idempotent when re-run.",
            discussion: "The server must not be running on the data directory.")

        @OptionGroup var data: DataDirOptions
        @Argument(help: "File to import.") var file: String
        @Option(help: "Events per append batch (1...10000).") var batch = 1_000

        func validate() throws {
            guard (1...Limits().batchEventsMax).contains(batch) else {
                throw ValidationError("--batch must be 1...\(Limits().batchEventsMax), not \(batch)")
            }
        }

        func run() async throws {
            try await Banyan.reportingErrors {
                // No genesis yet: an export brings its own, other files get CelestialTree's (importJSONL decides).
                var options = StoreOptions()
                options.createGenesis = false
                let store = try await EventStore.open(at: data.dataDir, options: options)
                defer { store.close() }
                let started = Date()
                var lastReport = Date.distantPast
                let summary = try await store.importJSONL(path: file, batchEvents: batch) { progress in
                    guard Date().timeIntervalSince(lastReport) >= 1 else { return }
                    lastReport = Date()
                    let rate = Double(progress.lines) / max(Date().timeIntervalSince(started), 0.001)
                    Console.progress("importing: \(progress.lines) lines, \(progress.appended) new, \(progress.duplicates) already present (\(Int(rate)) lines/s)")
                }
                let seconds = Date().timeIntervalSince(started)
                if isatty(2) != 0 { Console.error("") }
                Console.out("imported \(summary.lines) lines from \(file): \(summary.appended) new events, \(summary.duplicates) already present; last id \(summary.lastID); \(String(format: "%.1f", seconds)) s (\(Int(Double(summary.lines) / max(seconds, 0.001))) events/s)")
            }
        }
    }
}
