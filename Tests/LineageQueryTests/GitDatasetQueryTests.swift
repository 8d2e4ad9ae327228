import EventLog
import Foundation
import Testing
@testable import LineageQuery

/// The query forms on the real git/git graph, against tools/git_dag_reference.py's numbers.
struct GitDatasetQueryTests {
    struct Reference: Decodable {
        struct Pick: Decodable {
            var key: String
            var ancestors: Int
            var descendants: Int
            var roots: [String]
        }
        struct Between: Decodable {
            var from: String
            var to: String
            var count: Int
        }
        var picks: [Pick]
        var between: [Between]
    }

    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func queryFormsMatchTheIndependentReference() async throws {
        let dataset = ProcessInfo.processInfo.environment["BANYAN_DATASETS"].map { $0 + "/git-dag.jsonl.zst" }
            ?? Self.repoRoot.deletingLastPathComponent().appendingPathComponent("shared/datasets/git-dag.jsonl.zst").path
        try #require(FileManager.default.fileExists(atPath: dataset), "dataset not found at \(dataset); set BANYAN_DATASETS")
        let reference = try JSONDecoder().decode(
            Reference.self, from: Data(contentsOf: Self.repoRoot.appendingPathComponent("Tests/EventLogTests/Fixtures/git-dag-reference.json")))
        let path = NSTemporaryDirectory() + "banyan-gitquery-\(UUID().uuidString.prefix(8))"
        var options = StoreOptions()
        options.durability = .never
        let store = try await EventStore.open(at: path, options: options)
        defer {
            store.close()
            try? FileManager.default.removeItem(atPath: path)
        }
        _ = try await store.importJSONL(path: dataset)
        func count(_ q: String) throws -> Int {
            guard case .count(let n) = try Executor.run(q, store: store).answer else { throw QueryError(.analysis, "not a count: \(q)", range: 0..<0) }
            return n
        }
        for pick in reference.picks {
            let start = "key \"\(pick.key)\""
            #expect(try count("count(ancestors(\(start)))") == pick.ancestors, "ancestors of \(pick.key)")
            #expect(try count("count(descendants(\(start)))") == pick.descendants, "descendants of \(pick.key)")
            guard case .ids(let roots) = try Executor.run("roots(ancestors(\(start)))", store: store).answer else { continue }
            let rootKeys = try roots.compactMap { try store.event($0)?.key }.sorted()
            // roots(ancestors(x)) excludes x itself; the reference lists x when x is a root.
            #expect(rootKeys == pick.roots.filter { $0 != pick.key }.sorted(), "roots of \(pick.key)")
        }
        for b in reference.between {
            #expect(try count("count(between(key \"\(b.from)\", key \"\(b.to)\"))") == b.count, "between \(b.from) and \(b.to)")
            guard case .paths(let paths) = try Executor.run("path(key \"\(b.from)\", key \"\(b.to)\")", store: store).answer,
                let found = paths.first else {
                Issue.record("no path from \(b.from) to \(b.to)")
                continue
            }
            for (u, v) in zip(found, found.dropFirst()) {
                #expect(try store.parents(of: v)?.contains(u) == true, "\(u) -> \(v) must be a link")
            }
        }
        // Filtered forms, checked against the store's own primitives.
        let tip = "key \"1a3e64c6c4a623626ff0687008732a8e007e2a1c\""
        let merges = try count("count(ancestors(\(tip)) where type = \"merge\")")
        let tipID = try #require(try store.id(forKey: "1a3e64c6c4a623626ff0687008732a8e007e2a1c"))
        let all = try #require(try store.ancestors(of: tipID))
        var expected = 0
        for id in all where try store.event(id)?.type == "merge" { expected += 1 }
        #expect(merges == expected && merges > 0)
    }
}
