import Foundation
import Testing
@testable import LineageQuery

/// Golden tests: query text → tree dump, and query text → rendered error.
struct ParserTests {
    static let golden: [(String, String)] = [
        ("ancestors(42)", "(ancestors 42)"),
        (#"ancestors(key "8bc9a0c7") where type = "merge" limit 100"#,
         #"(select (ancestors key:"8bc9a0c7") (where (= type "merge")) (limit 100))"#),
        (#"descendants(42, depth <= 3) where payload.status = "error" and time >= "2026-01-01T00:00:00Z""#,
         #"(select (descendants 42 depth:1..3) (where (and (= payload.status "error") (>= time "2026-01-01T00:00:00Z"))))"#),
        (#"descendants(42) where type in ("task.failed", "task.error") or payload.attempt > 3"#,
         #"(select (descendants 42) (where (or (in type "task.failed" "task.error") (> payload.attempt 3))))"#),
        ("path(12, 99)   -- one shortest path", "(path 12 99)"),
        ("paths(12, 99) limit 10", "(select (paths 12 99) (limit 10))"),
        ("between(12, 99)", "(between 12 99)"),
        ("roots(ancestors(42))", "(roots (ancestors 42))"),
        ("heads(descendants(7))", "(heads (descendants 7))"),
        ("count(descendants(7))", "(count (descendants 7))"),
        (#"events where stream = "job_events:job_001" order by id desc limit 20"#,
         #"(select (events) (where (= stream "job_events:job_001")) (order id desc) (limit 20))"#),
        (#"explain ancestors(42) where type = "merge""#, #"(explain (select (ancestors 42) (where (= type "merge"))))"#),
        (#"descendants(7, depth = 2) where not (exists(payload.error) or message contains "retry") follow matching"#,
         #"(select (descendants 7 depth:2..2) (where (not (or (exists payload.error) (contains message "retry"))) follow-matching))"#),
        ("DESCENDANTS(7) WHERE payload.n != -1.5 AND payload.ok = true ORDER BY time", "(select (descendants 7) (where (and (!= payload.n -1.5) (= payload.ok true))) (order time asc))"),
        (#"events where payload."odd key".x = null"#, #"(select (events) (where (= payload.odd key.x null)))"#),
    ]

    @Test func everyFormParsesToItsTree() throws {
        for (query, expected) in Self.golden {
            let statement = try Parser.parse(query)
            #expect(statement.dump == expected, "query: \(query)")
        }
    }

    static let errors: [(String, String)] = [
        ("ancestor(42)", "line 1, column 1: unknown query 'ancestor'\n  ancestor(42)\n  ^^^^^^^^\n  hint: did you mean ancestors?"),
        ("ancestors(0)", "line 1, column 11: expected an event id (1 or more) or key \"...\"\n  ancestors(0)\n            ^"),
        ("descendants(42) where type = merge",
         "line 1, column 30: expected a value (a \"string\", a number, true, false or null)\n  descendants(42) where type = merge\n                               ^^^^^\n  hint: quote text values: \"merge\""),
        ("descendants(42)\n  where type = \"x\" limit 5 where",
         "line 2, column 28: unexpected 'where' after the end of the query\n    where type = \"x\" limit 5 where\n                             ^^^^^\n  hint: clauses come in the order: where, follow matching, order by, limit"),
        ("events where message = \"unterminated", "line 1, column 24: unterminated string\n  events where message = \"unterminated\n                         ^^^^^^^^^^^^^\n  hint: close it with \""),
        ("ancestors(42", "line 1, column 13: expected ')', found the end of the query\n  ancestors(42\n              ^"),
        ("events where type = \"é\" and é", "line 1, column 30: unexpected character 'é'\n  events where type = \"é\" and é\n                              ^"),
    ]

    @Test func errorsNameLineColumnAndShowACaret() {
        for (query, expected) in Self.errors {
            do {
                _ = try Parser.parse(query)
                Issue.record("accepted: \(query)")
            } catch {
                #expect(error.rendered(in: query) == expected, "query: \(query)")
            }
        }
    }

    @Test func nestingAndLengthAreBounded() {
        let deep = String(repeating: "not ", count: 200) + "type = \"x\""
        #expect(throws: QueryError.self) { try Parser.parse("events where " + deep) }
        let parens = String(repeating: "(", count: 5_000) + "type = \"x\"" + String(repeating: ")", count: 5_000)
        #expect(throws: QueryError.self) { try Parser.parse("events where " + parens) }
        let wide = (0..<6_000).map { "type = \"\($0)\"" }.joined(separator: " or ")
        #expect(throws: QueryError.self) { try Parser.parse("events where " + wide) }
    }

    /// Random and mutated query text: the parser must end in a tree or a QueryError whose range
    /// lies inside the text, and rendering it must not trap.
    @Test func randomAndMutatedTextFailsCleanly() {
        var seed = UInt64(Date().timeIntervalSince1970 * 1000)
        if let fixed = ProcessInfo.processInfo.environment["BANYAN_SEED"].flatMap(UInt64.init) { seed = fixed }
        print("ParserTests.randomAndMutatedTextFailsCleanly: seed \(seed) (set BANYAN_SEED=\(seed) to replay)")
        var rng = SplitMix(state: seed)
        let pieces = ["ancestors", "(", ")", ",", "42", "key", "\"k\"", "where", "type", "=", "!=", "<=", "in", "and", "or",
                      "not", "payload", ".", "status", "limit", "depth", "events", "order", "by", "desc", "\"", "-", "1.5",
                      "explain", "count", "é", "\\", "--", "\n", " ", "exists", "follow", "matching", "0", "true"]
        let seeds = Self.golden.map(\.0)
        for iteration in 0..<3_000 {
            var text: String
            if iteration % 2 == 0 {
                text = (0..<Int(rng.next() % 12)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined(separator: rng.next() % 2 == 0 ? " " : "")
            } else {
                var bytes = Array(seeds[Int(rng.next() % UInt64(seeds.count))].utf8)
                for _ in 0..<Int(1 + rng.next() % 4) where !bytes.isEmpty {
                    let at = Int(rng.next() % UInt64(bytes.count))
                    switch rng.next() % 3 {
                    case 0: bytes.remove(at: at)
                    case 1: bytes.insert(UInt8(truncatingIfNeeded: rng.next() % 128), at: at)
                    default: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                    }
                }
                text = String(decoding: bytes, as: UTF8.self)
            }
            do {
                _ = try Parser.parse(text)
            } catch {
                let count = text.utf8.count
                #expect(error.range.lowerBound >= 0 && error.range.upperBound <= count, "seed \(seed) iteration \(iteration): \(text.debugDescription)")
                #expect(!error.rendered(in: text).isEmpty)
            }
        }
    }
}
