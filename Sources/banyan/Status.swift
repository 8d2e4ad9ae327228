import ArgumentParser
import EventLog

extension Banyan {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show counts of a data directory (read-only; works beside a running server).")

        @OptionGroup var data: DataDirOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await Banyan.reportingErrors {
                let store = try await Store.openReadOnly(data.dataDir)
                defer { store.close() }
                let stats = try store.stats()
                if json {
                    var w = JSONWriter()
                    w.write(JSONValue.members([
                        "data_dir": .string(data.dataDir), "last_id": .int(stats.events), "edges": .int(stats.edges),
                        "roots": .int(stats.roots), "heads": .int(stats.heads), "epoch": .int(stats.epoch),
                        "sealed_segments": .int(stats.sealedSegments), "disk_bytes": .int(stats.diskBytes),
                    ]))
                    Console.write(w.bytes + [0x0A])
                } else {
                    Console.out("""
                        data dir:        \(data.dataDir)
                        last id:         \(stats.events)
                        edges:           \(stats.edges)
                        roots / heads:   \(stats.roots) / \(stats.heads)
                        epoch:           \(stats.epoch)
                        sealed segments: \(stats.sealedSegments)
                        disk bytes:      \(stats.diskBytes)
                        """)
                }
            }
        }
    }
}
