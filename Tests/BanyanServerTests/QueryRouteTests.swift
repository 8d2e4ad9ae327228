import BanyanServer
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
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
            #expect((plan["plan"] as? String)?.contains("scan index by_type") == true)
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
}
