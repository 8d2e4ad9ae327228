import Testing
@testable import LineageQuery

/// Golden tests: query text → explain output.
struct PlannerTests {
    static let golden: [(String, String)] = [
        (#"ancestors(42) where type = "merge""#, """
            filter type = "merge"
              traverse ancestors from 42 via parents, ids [1, start), visited set: bitset over the range
            """),
        (#"descendants(key "k", depth <= 3) where payload.status = "error" follow matching limit 5"#, """
            limit 5
              filter payload.status = "error"
                traverse descendants from key:"k" via children, ids (start, last], depth 1...3, only through events matching payload.status = "error", visited set: bitset over the range
            """),
        (#"events where stream = "jobs" and type = "x" order by id desc limit 20"#, """
            limit 20
              sort by id desc
                filter type = "x"
                  scan stream column "jobs" (in memory)
            """),
        (#"events where type = "fat""#, """
            scan type column "fat" (in memory)
            """),
        (#"events where type = "merge" or type = "commit""#, """
            filter (type = "merge" or type = "commit")
              scan log (id order)
            """),
        ("paths(12, 99)", "up to 10 shortest paths 12 -> 99, ids (12, 99)"),
        ("paths(12, 99) limit 3", "up to 3 shortest paths 12 -> 99, ids (12, 99)"),
        ("path(12, 99)", "shortest path 12 -> 99, ids (12, 99)"),
        ("between(12, 99)", "between 12 and 99: descendants of 12 ∩ ancestors of 99, ids [12, 99]"),
        ("count(roots(ancestors(42)))", """
            count
              roots
                traverse ancestors from 42 via parents, ids [1, start), visited set: bitset over the range
            """),
        (#"events where time >= "2026-01-01T00:00:00Z""#, """
            filter time >= 1767225600000000000ns
              scan log (id order)
            """),
    ]

    @Test func plansMatchTheirExplainText() throws {
        for (query, expected) in Self.golden {
            let plan = try Planner.plan(try Analyzer.analyze(query))
            #expect(plan.explained == expected, "query: \(query)\n\(plan.explained)")
        }
    }
}
