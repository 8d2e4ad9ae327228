import ArgumentParser
import EventLog

extension Banyan {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Walk the store and check every invariant; exit code 0 only when clean.")

        @OptionGroup var data: DataDirOptions
        @Flag(help: "Print one JSON object.") var json = false
        @Option(help: "Problems to list (all are counted).") var problemsMax = 100

        func run() async throws {
            try await Banyan.reportingErrors {
                let store = try await Store.openReadOnly(data.dataDir)
                defer { store.close() }
                let report = try store.verify(problemsMax: problemsMax) { id in
                    if !json { Console.progress("verify: \(id) events checked") }
                }
                if json {
                    var w = JSONWriter()
                    w.writeRaw("{\"ok\":")
                    w.writeBool(report.ok)
                    w.writeRaw(",\"events\":")
                    w.writeUInt(report.events)
                    w.writeRaw(",\"edges\":")
                    w.writeUInt(report.edges)
                    w.writeRaw(",\"roots\":")
                    w.writeUInt(report.roots)
                    w.writeRaw(",\"heads\":")
                    w.writeUInt(report.heads)
                    w.writeRaw(",\"keyed\":")
                    w.writeUInt(report.keyed)
                    w.writeRaw(",\"sealed_segments\":")
                    w.writeInt(Int64(report.sealedSegments))
                    w.writeRaw(",\"problem_count\":")
                    w.writeInt(Int64(report.problemCount))
                    w.writeRaw(",\"problems\":[")
                    for (i, p) in report.problems.enumerated() {
                        if i > 0 { w.writeRaw(",") }
                        w.writeString(p)
                    }
                    w.writeRaw("]}\n")
                    Console.write(w.bytes)
                } else {
                    Console.error("")
                    Console.out("verify: \(report.ok ? "ok" : "FAILED"): \(report.events) events, \(report.edges) edges, \(report.roots) roots, \(report.heads) heads, \(report.keyed) keyed, \(report.sealedSegments) sealed segments, \(report.problemCount) problems")
                    for p in report.problems { Console.out("  - \(p)") }
                }
                if !report.ok { throw ExitCode.failure }
            }
        }
    }
}
