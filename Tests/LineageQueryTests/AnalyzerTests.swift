import Testing
@testable import LineageQuery

struct AnalyzerTests {
    @Test func fieldsResolveAndLiteralsTakeTheirFieldsType() throws {
        let q = try Analyzer.analyze(#"descendants(42) where time >= "2026-01-01T00:00:00Z" and id < 100 and payload.attempt > 3 and payload.ok = true"#)
        #expect(q.predicate == .and(
            .and(
                .and(.compare(.time, .greaterEqual, .time(1_767_225_600_000_000_000)), .compare(.id, .less, .id(100))),
                .compare(.payload(["attempt"]), .greater, .number(text: "3", double: 3))),
            .compare(.payload(["ok"]), .equal, .bool(true))))
        let inList = try Analyzer.analyze(#"events where type in ("a", "b") and not exists(payload.error)"#)
        #expect(inList.predicate == .and(.isIn(.type, [.string("a"), .string("b")]), .not(.exists(.payload(["error"])))))
    }

    static let errors: [(String, String)] = [
        (#"descendants(1) where tpye = "x""#,
         "line 1, column 22: unknown field 'tpye'\n  descendants(1) where tpye = \"x\"\n                       ^^^^\n  hint: did you mean type?"),
        (#"events where typ.x = "x""#,
         "line 1, column 14: typ has no members; only payload does\n  events where typ.x = \"x\"\n               ^^^^^\n  hint: did you mean payload.x?"),
        ("events where time > \"yesterday\"",
         "line 1, column 21: time must be RFC 3339, e.g. \"2026-01-01T00:00:00Z\", or Unix nanoseconds\n  events where time > \"yesterday\"\n                      ^^^^^^^^^^^"),
        ("events where id = \"7\"", "line 1, column 19: id compares with an integer\n  events where id = \"7\"\n                    ^^^"),
        ("events where type = 3", "line 1, column 21: this field holds text: quote the value\n  events where type = 3\n                      ^\n  hint: e.g. \"3\""),
        ("path(1, 2) where type = \"x\" follow matching",
         "line 1, column 1: follow matching applies to ancestors and descendants only\n  path(1, 2) where type = \"x\" follow matching\n  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"),
        ("count(descendants(1)) limit 5",
         "line 1, column 29: limit does not apply to a count\n  count(descendants(1)) limit 5\n                              ^\n  hint: put the limit inside count(...)"),
        ("events where payload.n < null", "line 1, column 26: null can only be compared with = or !=\n  events where payload.n < null\n                           ^^^^"),
        ("events where exists(type)", "line 1, column 21: exists(...) tests payload fields, e.g. exists(payload.error)\n  events where exists(type)\n                      ^^^^"),
    ]

    @Test func analysisErrorsPointAtTheTextAndSuggestAFix() {
        for (query, expected) in Self.errors {
            do {
                _ = try Analyzer.analyze(query)
                Issue.record("accepted: \(query)")
            } catch {
                #expect(error.code == .analysis, "query: \(query)")
                #expect(error.rendered(in: query) == expected, "query: \(query)")
            }
        }
    }
}
