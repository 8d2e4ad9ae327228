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
                    w.writeRaw("{\"data_dir\":")
                    w.writeString(data.dataDir)
                    w.writeRaw(",\"last_id\":")
                    w.writeUInt(stats.events)
                    w.writeRaw(",\"edges\":")
                    w.writeUInt(stats.edges)
                    w.writeRaw(",\"roots\":")
                    w.writeInt(Int64(stats.roots))
                    w.writeRaw(",\"heads\":")
                    w.writeInt(Int64(stats.heads))
                    w.writeRaw(",\"epoch\":")
                    w.writeUInt(stats.epoch)
                    w.writeRaw(",\"sealed_segments\":")
                    w.writeInt(Int64(stats.sealedSegments))
                    w.writeRaw(",\"disk_bytes\":")
                    w.writeUInt(stats.diskBytes)
                    w.writeRaw("}\n")
                    Console.write(w.bytes)
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
