import Foundation
import Testing
import TestSupport
@testable import EventLog

/// Imports the real git/git commit graph (shared/datasets) and checks the store's answers
/// against numbers computed independently by tools/git_dag_reference.py.
struct GitDatasetTests {
    struct Reference: Decodable {
        struct Pick: Decodable {
            var key: String
            var line: Int
            var ancestors: Int
            var descendants: Int
            var roots: [String]
        }
        struct Between: Decodable {
            var from: String
            var to: String
            var count: Int
        }
        var events: Int
        var edges: Int
        var roots: [String]
        var heads: [String]
        var picks: [Pick]
        var between: [Between]
    }

    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var datasetPath: String {
        ProcessInfo.processInfo.environment["BANYAN_DATASETS"].map { $0 + "/git-dag.jsonl.zst" }
            ?? repoRoot.deletingLastPathComponent().appendingPathComponent("shared/datasets/git-dag.jsonl.zst").path
    }

    @Test func importMatchesTheIndependentReference() async throws {
        let path = Self.datasetPath
        try #require(FileManager.default.fileExists(atPath: path), "dataset not found at \(path); set BANYAN_DATASETS")
        let referenceData = try Data(contentsOf: Self.repoRoot.appendingPathComponent("Tests/EventLogTests/Fixtures/git-dag-reference.json"))
        let reference = try JSONDecoder().decode(Reference.self, from: referenceData)
        let t = try await TempStore.make(genesis: true)
        defer { t.remove() }
        let s = t.store
        let summary = try await s.importJSONL(path: path)
        #expect(summary.appended == reference.events)
        #expect(s.lastID == UInt64(reference.events + 1))
        #expect(try s.stats().edges == UInt64(reference.edges))

        func id(_ key: String) throws -> EventID { try #require(try s.id(forKey: key), "key \(key)") }
        func keys(_ ids: [EventID]) throws -> [String] { try ids.map { try #require(try s.event($0)?.key) }.sorted() }
        // Genesis (id 1) is a root of its own; the dataset's roots and heads are the rest.
        #expect(try keys(s.roots().filter { $0 != 1 }) == reference.roots.sorted())
        #expect(try keys(s.heads().filter { $0 != 1 }) == reference.heads.sorted())
        for pick in reference.picks {
            let pid = try id(pick.key)
            #expect(pid == EventID(pick.line + 1), "id mapping for line \(pick.line)")
            #expect(try s.ancestors(of: pid)?.count == pick.ancestors, "ancestors of line \(pick.line)")
            #expect(try s.descendants(of: pid)?.count == pick.descendants, "descendants of line \(pick.line)")
            #expect(try keys(s.reachableRoots(of: pid) ?? []) == pick.roots.sorted(), "roots of line \(pick.line)")
        }
        for between in reference.between {
            let from = try id(between.from)
            let to = try id(between.to)
            let down = Set(try s.descendants(of: from) ?? [])
            let onPath = (try s.ancestors(of: to) ?? []).filter { down.contains($0) }
            #expect(onPath.count + 2 == between.count, "between \(between.from) and \(between.to)")
        }
        let again = try await s.importJSONL(path: path)
        #expect(again.appended == 0 && again.duplicates == reference.events, "re-import must be idempotent")
        let report = try s.verify()
        #expect(report.ok, "\(report.problems)")
        #expect(report.events == UInt64(reference.events + 1))
    }
}
