@testable import BanyanServer
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import LineageQuery
import Logging
import Testing

struct QueryRouteTests {
    static func post(_ client: any TestClientProtocol, _ json: String) async throws -> [String: Any] {
        let r = try await client.execute(uri: "/v1/query", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: json))
        return try #require(try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as? [String: Any])
    }

    @Test func followingNextYieldsTheAnswerOnceWhileEventsArrive() async throws {
        try await CelestialTreeRoutesTests.withServer { store, client in
            try await store.append((2...60).map { AppendRequest(type: $0 % 2 == 0 ? "even" : "odd", parents: [EventID($0 - 1)]) })
            var seen: [Int] = []
            var cursor: String?
            var pages = 0
            repeat {
                let cursorJSON = cursor.map { ",\"cursor\":\"\($0)\"" } ?? ""
                let page = try await Self.post(client, "{\"query\":\"descendants(1) where type = \\\"even\\\"\",\"page_size\":7\(cursorJSON)}")
                let results = try #require(page["results"] as? [[String: Any]])
                seen += results.compactMap { $0["id"] as? Int }
                cursor = page["next"] as? String
                // Appends between pages must neither appear nor shift the pages.
                try await store.append([AppendRequest(type: "even", parents: [store.lastID])])
                pages += 1
            } while cursor != nil && pages < 100
            #expect(seen == Array(stride(from: 2, through: 60, by: 2)), "every matching event of the snapshot, once, in id order")
            #expect(pages == 5)
        }
    }

    static func walkPages(_ client: any TestClientProtocol, _ query: String, pageSize: Int) async throws -> [[Int]] {
        var pages: [[Int]] = []
        var cursor: String?
        repeat {
            let cursorJSON = cursor.map { ",\"cursor\":\"\($0)\"" } ?? ""
            let page = try await Self.post(client, "{\"query\":\"\(query)\",\"page_size\":\(pageSize)\(cursorJSON)}")
            pages.append(try #require(page["results"] as? [[String: Any]]).compactMap { $0["id"] as? Int })
            cursor = page["next"] as? String
        } while cursor != nil && pages.count < 100
        return pages
    }

    static func answerLookups(_ client: any TestClientProtocol, _ result: String) async throws -> Int {
        let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
        let line = text.split(separator: "\n").first { $0.hasPrefix("banyan_query_answer_lookups_total{result=\"\(result)\"}") }
        return line.flatMap { $0.split(separator: " ").last }.flatMap { Int($0) } ?? 0
    }

    /// Pages after the first take the kept answer (the lookups count hits) and say exactly what
    /// a server that keeps nothing says, page by page, in an order the reader walks backwards.
    @Test func laterPagesTakeTheKeptAnswerAndMatchAServerThatKeepsNone() async throws {
        let appends = (2...80).map { AppendRequest(type: $0 % 2 == 0 ? "even" : "odd", parents: [EventID($0 - 1)]) }
        let evens = Array(stride(from: 80, through: 2, by: -2))
        let expected = stride(from: 0, to: evens.count, by: 6).map { Array(evens[$0..<min($0 + 6, evens.count)]) }
        let query = #"events where type = \"even\" order by id desc"#
        try await CelestialTreeRoutesTests.withServer { store, client in
            try await store.append(appends)
            #expect(try await Self.walkPages(client, query, pageSize: 6) == expected)
            #expect(try await Self.answerLookups(client, "hit") == expected.count - 1, "every page after the first")
            #expect(try await Self.answerLookups(client, "miss") == 0, "a first page runs its query without looking")
            // The last page let the answer go: the same walk again runs the query again once.
            #expect(try await Self.walkPages(client, query, pageSize: 6) == expected)
            #expect(try await Self.answerLookups(client, "hit") == 2 * (expected.count - 1))
        }
        try await CelestialTreeRoutesTests.withServer(limits: { $0.queryAnswerCacheBytesMax = 0 }) { store, client in
            try await store.append(appends)
            #expect(try await Self.walkPages(client, query, pageSize: 6) == expected)
            #expect(try await Self.answerLookups(client, "hit") == 0)
            #expect(try await Self.answerLookups(client, "miss") == expected.count - 1)
        }
    }

    @Test func keptAnswersStayWithinTheirBytesLeastRecentlyUsedFirst() {
        func answer(_ count: Int) -> QueryResult { QueryResult(answer: .ids((1...count).map { EventID($0) })) }
        func key(_ text: String) -> QueryAnswers.Key { QueryAnswers.Key(text: text, snapshot: 9, budget: QueryBudget()) }
        let each = 100 * 8 + 1 + QueryAnswers.overheadBytes
        let answers = QueryAnswers(bytesMax: 4 * each)
        for name in ["a", "b", "c", "d"] { answers.keep(answer(100), for: key(name), rewrites: 0) }
        #expect(answers.figures.answers == 4 && answers.figures.bytes == 4 * each)
        _ = answers.answer(key("a"), rewrites: 0)
        answers.keep(answer(100), for: key("e"), rewrites: 0)
        #expect(answers.answer(key("b"), rewrites: 0) == nil, "the least recently used answer left")
        #expect(answers.answer(key("a"), rewrites: 0) != nil && answers.answer(key("e"), rewrites: 0) != nil)
        #expect(answers.figures.bytes <= 4 * each)
        answers.keep(answer(200), for: key("big"), rewrites: 0)
        #expect(answers.answer(key("big"), rewrites: 0) == nil, "more than a quarter of the bound is never kept")
        var other = key("a")
        other.snapshot = 10
        #expect(answers.answer(other, rewrites: 0) == nil, "another snapshot is another answer")
        #expect(answers.answer(key("a"), rewrites: 1) == nil, "after a compaction, prune or truncation the answer is dropped")
        #expect(answers.answer(key("a"), rewrites: 0) == nil)
        answers.forget(key("e"))
        #expect(answers.answer(key("e"), rewrites: 0) == nil)
        let none = QueryAnswers(bytesMax: 0)
        none.keep(answer(1), for: key("a"), rewrites: 0)
        #expect(none.answer(key("a"), rewrites: 0) == nil && none.figures.bytes == 0)
    }

    @Test func errorsCarryLineAndColumnAndCountsAnswerCount() async throws {
        try await CelestialTreeRoutesTests.withServer { store, client in
            try await store.append([AppendRequest(type: "a", parents: [1]), AppendRequest(type: "b", parents: [2])])
            let error = try await Self.post(client, "{\"query\":\"descendants(1)\\n where tpye = \\\"x\\\"\"}")
            #expect(error["error"] as? String == "invalid query")
            #expect(error["line"] as? Int == 2 && error["column"] as? Int == 8)
            #expect((error["detail"] as? String)?.contains("did you mean type?") == true)
            let count = try await Self.post(client, "{\"query\":\"count(descendants(1))\"}")
            #expect(count["count"] as? Int == 2)
            let plan = try await Self.post(client, "{\"query\":\"explain events where type = \\\"a\\\"\"}")
            #expect((plan["plan"] as? String)?.contains("scan type column") == true)
        }
    }

    @Test func aRequestBudgetTruncatesAndIsCappedByTheServerMaximum() async throws {
        try await CelestialTreeRoutesTests.withServer { store, client in
            try await store.append((2...60).map { AppendRequest(type: "c", parents: [EventID($0 - 1)]) })
            let full = try await Self.post(client, "{\"query\":\"count(ancestors(60))\"}")
            #expect(full["count"] as? Int == 59 && full["truncated"] as? Bool == false)
            let cut = try await Self.post(client, "{\"query\":\"count(ancestors(60))\",\"budget\":{\"nodes_max\":10}}")
            #expect(cut["truncated"] as? Bool == true)
            #expect((cut["count"] as? Int ?? 99) <= 10)
            #expect(((cut["stats"] as? [String: Any])?["reason"] as? String)?.contains("node budget of 10") == true)
            let tooMuch = try await Self.post(client, "{\"query\":\"count(ancestors(60))\",\"budget\":{\"nodes_max\":20000000}}")
            #expect(tooMuch["field"] as? String == "budget.nodes_max")
            #expect((tooMuch["detail"] as? String)?.contains("1...10000000") == true)
            let unknown = try await Self.post(client, "{\"query\":\"count(ancestors(60))\",\"budget\":{\"nodes\":5}}")
            #expect(unknown["field"] as? String == "budget.nodes")
            let badTime = try await Self.post(client, "{\"query\":\"count(ancestors(60))\",\"budget\":{\"time_max_ms\":0}}")
            #expect(badTime["field"] as? String == "budget.time_max_ms")
            let badPage = try await Self.post(client, "{\"query\":\"ancestors(60)\",\"page_size\":\"ten\"}")
            #expect(badPage["field"] as? String == "page_size")
        }
    }

    /// Events `2k` and `2k+1` both have parents `[2k-2, 2k-1]`: 2^layers paths from the bottom to the top.
    static func ladder(_ store: EventStore, layers: Int) async throws {
        try await store.append([AppendRequest(type: "rung", parents: [1])])  // id 2; ids 2 and 3 form layer 1
        try await store.append([AppendRequest(type: "rung", parents: [1])])
        for layer in 2...layers {
            let a = EventID(2 * layer - 2), b = EventID(2 * layer - 1)
            try await store.append([AppendRequest(type: "rung", parents: [a, b]), AppendRequest(type: "rung", parents: [a, b])])
        }
    }

    static func paths(_ page: [String: Any]) throws -> [[Int]] {
        try #require(page["paths"] as? [[Int]])
    }

    @Test func pathsArePagedAndTheirIdsCountAgainstTheNodeBudget() async throws {
        try await CelestialTreeRoutesTests.withServer { store, client in
            try await Self.ladder(store, layers: 100)  // ids 2...201, 2^99 paths from 2 to 201
            // Before: paths were not charged, so limit 3000 gave 3000 paths of 100 ids whatever the budget.
            let cut = try await Self.post(client, "{\"query\":\"paths(2, 201) limit 3000\",\"budget\":{\"nodes_max\":5000},\"page_size\":10000}")
            let found = try Self.paths(cut)
            #expect(cut["truncated"] as? Bool == true)
            #expect(found.count >= 1 && found.count < 50, "found \(found.count) paths")
            #expect(found.reduce(0) { $0 + $1.count } <= 5000, "path ids are part of the node budget")
            #expect(found.allSatisfy { $0.first == 2 && $0.last == 201 && $0.count == 100 })

            // page_size pages paths too; following next yields each path once.
            var all: [[Int]] = []
            var cursor: String?
            var pages = 0
            repeat {
                let c = cursor.map { ",\"cursor\":\"\($0)\"" } ?? ""
                let page = try await Self.post(client, "{\"query\":\"paths(2, 201) limit 25\",\"page_size\":10\(c)}")
                let items = try Self.paths(page)
                #expect(items.count <= 10)
                all += items
                cursor = page["next"] as? String
                pages += 1
            } while cursor != nil && pages < 10
            #expect(pages == 3 && all.count == 25)
            #expect(Set(all.map { $0.map(String.init).joined(separator: ",") }).count == 25, "no path twice")
        }
    }

    @Test func aPageEndsAtItsByteCapWithACursorAndThePagesAddUp() async throws {
        let capBytes = 64 << 10
        try await CelestialTreeRoutesTests.withServer(limits: { $0.queryPageBytesMax = capBytes }) { store, client in
            let fat = String(repeating: "x", count: 10_000)
            try await store.append((0..<40).map { _ in AppendRequest(type: "fat", parents: [1], payload: .string(fat)) })
            var seen: [Int] = []
            var cursor: String?
            var pages = 0
            repeat {
                let c = cursor.map { ",\"cursor\":\"\($0)\"" } ?? ""
                let r = try await client.execute(
                    uri: "/v1/query", method: .post, headers: [.contentType: "application/json"],
                    body: ByteBuffer(string: "{\"query\":\"events where type = \\\"fat\\\"\",\"include\":[\"payload\"],\"page_size\":10000\(c)}"))
                #expect(r.body.readableBytes <= capBytes + 11_000, "a page stops at the cap plus at most one event")
                let page = try #require(try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as? [String: Any])
                let results = try #require(page["results"] as? [[String: Any]])
                #expect(!results.isEmpty)
                seen += results.compactMap { $0["id"] as? Int }
                cursor = page["next"] as? String
                pages += 1
            } while cursor != nil && pages < 100
            #expect(seen == Array(2...41))
            #expect(pages >= 6, "40 events of 10 kB in pages of 64 KiB")
        }
    }

    @Test func theTimeBudgetCoversBuildingTheResponse() async throws {
        try await CelestialTreeRoutesTests.withServer { store, client in
            let fat = String(repeating: "y", count: 200_000)
            for _ in 0..<4 {
                try await store.append((0..<50).map { _ in AppendRequest(type: "fat", parents: [1], payload: .string(fat)) })
            }
            // 200 events of 200 kB (40 MB) cannot be read and written in a millisecond.
            let page = try await Self.post(
                client, "{\"query\":\"events where type = \\\"fat\\\"\",\"include\":[\"payload\"],\"page_size\":200,\"budget\":{\"time_max_ms\":1}}")
            let results = try #require(page["results"] as? [[String: Any]])
            // The clock is read at least every 64 KiB of body, not only every 64 results.
            #expect(results.count >= 1 && results.count < 64, "\(page.filter { $0.key != "results" })")
            #expect(page["next"] as? String != nil)
        }
    }

    @Test func cursorsAreCheckedAndBoundToTheirQuery() async throws {
        try await CelestialTreeRoutesTests.withServer { store, client in
            try await store.append((2...30).map { AppendRequest(type: "c", parents: [EventID($0 - 1)]) })
            let first = try await Self.post(client, "{\"query\":\"descendants(1)\",\"page_size\":5}")
            let next = try #require(first["next"] as? String)
            let second = try await Self.post(client, "{\"query\":\"descendants(1)\",\"page_size\":5,\"cursor\":\"\(next)\"}")
            #expect((second["results"] as? [[String: Any]])?.first?["id"] as? Int == 7)
            var tampered = Array(next)
            tampered[10] = tampered[10] == "A" ? "B" : "A"
            for bad in ["999999999.1", "0.0", "", String(tampered), next + "A"] {
                let answer = try await Self.post(client, "{\"query\":\"descendants(1)\",\"cursor\":\"\(bad)\"}")
                #expect(answer["field"] as? String == "cursor", "cursor \(bad): \(answer)")
            }
            let other = try await Self.post(client, "{\"query\":\"ancestors(30)\",\"cursor\":\"\(next)\"}")
            #expect((other["detail"] as? String)?.contains("another query") == true)
        }
    }
}
