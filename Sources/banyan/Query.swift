import ArgumentParser
import EventLog
import LineageQuery

extension Banyan {
    struct Query: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a lineage query on a data directory (read-only; works beside a running server).",
            discussion: "Example: banyan query 'ancestors(42) where type = \"merge\" limit 10'. Grammar: docs/QUERY_LANGUAGE.md.")

        @OptionGroup var data: DataDirOptions
        @Argument(help: "The query text.") var text: String
        @Option(help: "Events the query may visit.") var nodesMax = QueryBudget().nodesMax
        @Option(help: "Seconds the query may run.") var seconds = 5

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
                    var executor = Executor(store: store, budget: budget)
                    let result = try executor.run(plan)
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
                    if let reason = result.reason { Console.error("banyan: truncated: \(reason)") }
                } catch let error as QueryError {
                    Console.error(error.rendered(in: text))
                    throw ExitCode(2)
                }
            }
        }
    }
}
