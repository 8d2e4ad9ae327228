import ArgumentParser
import BanyanClient
import EventLog
import Foundation

extension Banyan {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show counts of a data directory (read-only; works beside a running server), or with --url a running server's status, replication included.")

        @OptionGroup var data: DataDirOptions
        @Flag(help: "Print JSON.") var json = false
        @Option(help: "A running server's address: print its GET /v1/status (role, epoch, leader, followers and lag) instead. Uses BANYAN_TOKEN when the server has tokens.")
        var url: String?

        func run() async throws {
            try await Banyan.reportingErrors {
                if let url {
                    let client = BanyanHTTPClient(baseURL: url, token: ProcessInfo.processInfo.environment["BANYAN_TOKEN"])
                    Console.write(try await client.status() + [0x0A])
                    return
                }
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
