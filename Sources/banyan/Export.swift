import ArgumentParser
import EventLog
import Foundation

extension Banyan {
    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write events as JSONL (with ids and parent ids; `banyan import` reads it back into the same ids).")

        @OptionGroup var data: DataDirOptions
        @Option(help: "Write to this file instead of standard output.") var output: String?
        @Option(help: "Export events after this id.") var after: UInt64 = 0

        func run() async throws {
            try await Banyan.reportingErrors {
                let store = try await Store.openReadOnly(data.dataDir)
                defer { store.close() }
                let handle: FileHandle
                if let output {
                    guard FileManager.default.createFile(atPath: output, contents: nil) else {
                        throw LogError(.invalidArgument, "cannot create \(output)")
                    }
                    handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
                } else {
                    handle = FileHandle.standardOutput
                }
                let count = try store.exportJSONL(after: after) { bytes in try handle.write(contentsOf: bytes) }
                if let output {
                    try handle.close()
                    Console.error("exported \(count) events to \(output)")
                }
            }
        }
    }
}
