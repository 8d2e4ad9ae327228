import EventLog
import Foundation
import Testing
@testable import LineageQuery

/// Conditions on content that compaction dropped are unknown (three-valued), so a compacted
/// event matches only what its kept fields decide, and the answer counts the unknowns.
struct CompactedQueryTests {
    @Test func contentConditionsAreUnknownOnCompactedEvents() async throws {
        let path = NSTemporaryDirectory() + "banyan-compacted-query-\(UUID().uuidString.prefix(8))"
        var options = StoreOptions()
        options.durability = .never
        options.createGenesis = false
        let store = try await EventStore.open(at: path, options: options)
        defer {
            store.close()
            try? FileManager.default.removeItem(atPath: path)
        }
        // ids 1...6: types a, b alternating; payload {"n": id}; ids 1...4 get compacted.
        try await store.append((1...6).map { AppendRequest(type: $0 % 2 == 1 ? "a" : "b", message: "m\($0)", payload: .object([JSONMember(key: "n", value: .int($0))])) })
        _ = try store.compact(CompactionSpec(before: 5, through: store.lastID), control: 0)
        func ids(_ q: String) throws -> ([EventID], Int) {
            let result = try Executor.run(q, store: store)
            guard case .ids(let ids) = result.answer else { throw QueryError(.analysis, "not ids: \(q)", range: 0..<0) }
            return (ids, result.compacted)
        }
        #expect(try ids("events where payload.n = 1") == ([], 4))
        #expect(try ids("events where payload.n != 1") == ([5, 6], 4), "not equal is unknown too, not true")
        #expect(try ids("events where not (payload.n = 6)") == ([5], 4))
        #expect(try ids("events where type = \"a\" or payload.n = 6") == ([1, 3, 5, 6], 2), "true or unknown is true")
        #expect(try ids("events where type = \"a\" and payload.n = 1") == ([], 2), "false and unknown is false: not counted")
        #expect(try ids("events where exists(payload.n)") == ([5, 6], 4))
        #expect(try ids("events where message = null") == ([], 4))
        #expect(try ids("events where type = \"b\"") == ([2, 4, 6], 0))
    }
}
