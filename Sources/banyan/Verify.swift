import ArgumentParser
import EventLog

extension Banyan {
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Walk the store and check every invariant; exit code 0 only when clean.")

        @OptionGroup var data: DataDirOptions
        @Flag(help: "Print one JSON object.") var json = false
        @Option(help: "Problems to list (all are counted; 0...100000).") var problemsMax = 100

        func validate() throws {
            guard (0...100_000).contains(problemsMax) else { throw ValidationError("--problems-max must be 0...100000, not \(problemsMax)") }
        }

        func run() async throws {
            try await Banyan.reportingErrors {
                // A damaged write-ahead log is reported, and the intact part of the log checked.
                let store = try await Store.openReadOnly(data.dataDir, walDamage: .accept)
                defer { store.close() }
                let report = try store.verify(problemsMax: problemsMax) { id in
                    if !json { Console.progress("verify: \(id) events checked") }
                }
                if json {
                    var w = JSONWriter()
                    w.write(JSONValue.members([
                        "ok": .bool(report.ok), "events": .int(report.events), "edges": .int(report.edges),
                        "roots": .int(report.roots), "heads": .int(report.heads), "keyed": .int(report.keyed), "compacted": .int(report.compacted),
                        "pruned_below": report.prunedBelow.map { .int($0) } ?? .null, "sealed_segments": .int(report.sealedSegments), "problem_count": .int(report.problemCount),
                        "problems": .array(report.problems.map(JSONValue.string)), "notes": .array(report.notes.map(JSONValue.string)),
                    ]))
                    Console.write(w.bytes + [0x0A])
                } else {
                    Console.error("")
                    Console.out("verify: \(report.ok ? "ok" : "FAILED"): \(report.events) events, \(report.edges) edges, \(report.roots) roots, \(report.heads) heads, \(report.keyed) keyed, \(report.compacted) compacted, \(report.sealedSegments) sealed segments\(report.prunedBelow.map { ", ids from \($0) (pruned below)" } ?? ""), \(report.problemCount) problems")
                    for p in report.problems { Console.out("  - \(p)") }
                    for n in report.notes { Console.out("  note: \(n)") }
                }
                if !report.ok { throw ExitCode.failure }
            }
        }
    }
}
