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
        try Self.check(store, reference)
        let before = try Self.answers(store)

        // Compaction drops 90% of the payloads and messages and keeps every answer: the same
        // reference numbers, the same answers, and a payload condition that says what it missed.
        let horizon = store.lastID * 9 / 10
        let result = try store.compact(CompactionSpec(before: horizon, through: store.lastID), control: 0)
        #expect(result.compacted == horizon - 1, "every event below the horizon had a payload")
        #expect(result.recordBytesAfter < result.recordBytesBefore / 2)
        try Self.check(store, reference)
        let after = try Self.answers(store)
        for (a, b) in zip(before, after) where a != b { Issue.record("changed by compaction: \(a.prefix(300)) => \(b.prefix(300))") }
        #expect(try store.event(2)?.compaction?.payloadBytes != nil)
        #expect(try store.event(horizon)?.compaction == nil)
        let byAuthor = try Executor.run("events where payload.author = \"Linus Torvalds\"", store: store)
        #expect(byAuthor.compacted > 0, "compacted events met the payload condition")
        let byType = try Executor.run("count(events where type = \"merge\")", store: store)
        #expect(byType.compacted == 0)
        #expect(try store.verify().ok)
    }

    /// Answers of lineage forms that compaction must not change.
    static func answers(_ store: EventStore) throws -> [String] {
        let tip = "key \"1a3e64c6c4a623626ff0687008732a8e007e2a1c\""
        let queries = [
            "count(ancestors(\(tip)))", "roots(ancestors(\(tip)))", "heads(descendants(1))", "count(descendants(100) where type = \"merge\")",
            "path(1, \(tip))", "count(between(1000, \(tip)))", "events where time < 1200000000000000000 limit 50",
            "ancestors(\(tip)) where type = \"merge\" limit 100", "count(events where key = \"e83c5163316f89bfbde7d9ab23ca2e25604af290\")",
        ]
        return try queries.map { q in
            let result = try Executor.run(q, store: store)
            return "\(q) -> \(result.answer) truncated \(result.truncated)"
        }
    }

    static func check(_ store: EventStore, _ reference: Reference) throws {
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
        #expect(merges == expected && merges > 0, "\(merges) \(expected)")
    }
}
