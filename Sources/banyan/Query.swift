import ArgumentParser
import BanyanServer
import EventLog
import Foundation
import LineageQuery

extension Executor {
    fileprivate func runOnce(_ plan: LogicalPlan) throws -> QueryResult {
        var copy = self
        return try copy.run(plan)
    }
}

extension Banyan {
    struct Query: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a lineage query on a data directory (read-only; works beside a running server).",
            discussion: "Example: banyan query 'ancestors(42) where type = \"merge\" limit 10'. Grammar: docs/QUERY_LANGUAGE.md.")

        @OptionGroup var data: DataDirOptions
        @Argument(help: "The query text.") var text: String
        @Option(help: "Events the query may visit.") var nodesMax = QueryBudget().nodesMax
        @Option(help: "Seconds the query may run.") var seconds = 5
        @Option(help: "Run the query this many times (1...10000) and print its latency percentiles to stderr (tools/query_latency.sh).")
        var repeatCount = 1
        @Flag(help: "Exit 0 even when a budget cut the answer short (otherwise a truncated answer exits with 3).")
        var allowTruncated = false

        func validate() throws {
            let bounds = ServerConfiguration.Bounds.self
            guard bounds.queryNodes.contains(nodesMax) else {
                throw ValidationError("--nodes-max must be \(bounds.queryNodes.lowerBound)...\(bounds.queryNodes.upperBound), not \(nodesMax)")
            }
            let secondsMax = bounds.queryTimeMs.upperBound / 1_000
            guard (1...secondsMax).contains(seconds) else { throw ValidationError("--seconds must be 1...\(secondsMax), not \(seconds)") }
            guard (1...10_000).contains(repeatCount) else { throw ValidationError("--repeat-count must be 1...10000, not \(repeatCount)") }
        }

        /// Exit status of an answer a budget cut short: the output is printed, but it is not the whole answer.
        static let truncatedExitCode: Int32 = 3

        func run() async throws {
            try await Banyan.reportingErrors {
                let store = try await Store.openReadOnly(data.dataDir)
                defer { store.close() }
                var budget = QueryBudget()
                budget.nodesMax = nodesMax
                budget.timeMax = .seconds(seconds)
                do {
                    let analyzed = try Analyzer.analyze(text)
                    let plan = try Planner.plan(analyzed)
                    if analyzed.statement.explain {
                        Console.out(plan.explained)
                        return
                    }
                    var result = try Executor(store: store, budget: budget).runOnce(plan)
                    if repeatCount > 1 {
                        var micros: [Double] = []
                        for _ in 0..<repeatCount {
                            let started = ContinuousClock.now
                            result = try Executor(store: store, budget: budget).runOnce(plan)
                            let (s, atto) = (ContinuousClock.now - started).components
                            micros.append(Double(s) * 1e6 + Double(atto) / 1e12)
                        }
                        micros.sort()
                        func at(_ q: Double) -> String { String(format: "%.3f", micros[min(micros.count - 1, Int(q * Double(micros.count)))] / 1000) }
                        Console.error("banyan: \(repeatCount) runs after one warm-up, ms: min \(at(0)) p50 \(at(0.5)) p90 \(at(0.9)) p99 \(at(0.99)) max \(at(1)); visited \(result.visited)")
                    }
                    switch result.answer {
                    case .count(let n): Console.out(String(n))
                    case .paths(let paths): for path in paths { Console.out(path.map(String.init).joined(separator: " -> ")) }
                    case .ids(let ids):
                        for id in ids {
                            guard let event = try store.event(id) else { continue }
                            var w = JSONWriter()
                            EventStore.writeExportLine(event, into: &w)
                            Console.write(w.bytes)
                        }
                    }
                    if let reason = result.reason {
                        guard allowTruncated else {
                            Console.error("banyan: the answer is truncated (\(reason)); raise --nodes-max or --seconds, or pass --allow-truncated to accept a partial answer")
                            throw ExitCode(Self.truncatedExitCode)
                        }
                        Console.error("banyan: truncated: \(reason)")
                    }
                } catch let error as QueryError {
                    Console.error(error.rendered(in: text))
                    throw ExitCode(2)
                }
            }
        }
    }
}
