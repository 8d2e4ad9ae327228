import BanyanServer
import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// The CelestialTree-compatible routes through the real responder (no socket). The Python
/// suite in Tests/integration drives the same routes with the real `celestialtree` client.
struct CelestialTreeRoutesTests {
    /// A server on a fresh store in a temporary directory, for the body's requests; the server
    /// itself is handed over (its store, its maintenance jobs).
    static func withBanyanServer(
        _ name: String = #function, treeNodesMax: Int = Limits().treeNodesMax, limits configureLimits: (inout Limits) -> Void = { _ in },
        _ body: @Sendable (BanyanServer, any TestClientProtocol) async throws -> Void
    ) async throws {
        let path = NSTemporaryDirectory() + "banyan-server-test-\(name.filter { $0.isLetter })-\(UUID().uuidString.prefix(8))"
        var options = StoreOptions()
        options.durability = .never
        options.limits.treeNodesMax = treeNodesMax
        configureLimits(&options.limits)
        let store = try await EventStore.open(at: path, options: options)
        defer {
            store.close()
            try? FileManager.default.removeItem(atPath: path)
        }
        var config = ServerConfiguration()
        config.port = 0
        let server = try BanyanServer(store: store, config: config, logger: Logger(label: "test"))
        try await server.application().test(.router) { client in try await body(server, client) }
    }

    static func withServer(
        _ name: String = #function, treeNodesMax: Int = Limits().treeNodesMax, limits configureLimits: (inout Limits) -> Void = { _ in },
        _ body: @Sendable (EventStore, any TestClientProtocol) async throws -> Void
    ) async throws {
        try await withBanyanServer(name, treeNodesMax: treeNodesMax, limits: configureLimits) { server, client in try await body(server.store, client) }
    }

    static func post(_ client: any TestClientProtocol, _ uri: String, _ json: String) async throws -> TestResponse {
        try await client.execute(uri: uri, method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: json))
    }

    static func json(_ response: TestResponse) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(buffer: response.body), options: [.fragmentsAllowed])
    }

    @Test func emitThenReadBackInCelestialTreeShape() async throws {
        try await Self.withServer { store, client in
            let r = try await Self.post(client, "/emit", #"{"type":"task.input","parents":[1,1,0],"message":"hi","payload":{"b":[1,2],"a":"é"}}"#)
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "application/json; charset=utf-8")
            #expect(String(buffer: r.body) == "{\"id\":2}\n")
            let e = try await client.execute(uri: "/event/2", method: .get)
            let body = String(buffer: e.body)
            #expect(body.hasPrefix("{\"id\":2,\"time_unix_nano\":"))
            #expect(body.hasSuffix(",\"type\":\"task.input\",\"parents\":[1],\"message\":\"hi\",\"payload\":{\"b\":[1,2],\"a\":\"é\"}}\n"))
            let genesis = try Self.json(try await client.execute(uri: "/event/1", method: .get)) as? [String: Any]
            #expect(genesis?["type"] as? String == "genesis")
            #expect(genesis?["message"] as? String == "CelestialTree begins.")
        }
    }

    @Test func errorsHaveCelestialTreeStatusesAndBodies() async throws {
        try await Self.withServer { store, client in
            let cases: [(String, HTTPRequest.Method, String?, HTTPResponse.Status, String)] = [
                ("/emit", .post, "{bad", .badRequest, "invalid json"),
                ("/emit", .post, #"{"type":"x","extra":1}"#, .badRequest, "invalid json"),
                ("/emit", .post, #"{"parents":[]}"#, .badRequest, "emit failed"),
                ("/emit", .post, #"{"type":"x","parents":[99]}"#, .badRequest, "emit failed"),
                ("/emit", .post, #"{"type":"x","parents":["a"]}"#, .badRequest, "invalid json"),
                ("/emit", .get, nil, .methodNotAllowed, "method not allowed"),
                ("/event/abc", .get, nil, .badRequest, "bad id"),
                ("/event/0", .get, nil, .badRequest, "bad id"),
                ("/event/5", .get, nil, .notFound, "not found"),
                ("/descendants/5", .get, nil, .notFound, "descendant process failed"),
                ("/provenance/1?view=tree", .get, nil, .badRequest, "bad view"),
                ("/descendants", .post, #"{"ids":[]}"#, .badRequest, "ids is required"),
            ]
            for (uri, method, body, status, error) in cases {
                let r = try await client.execute(uri: uri, method: method, headers: [.contentType: "application/json"], body: body.map { ByteBuffer(string: $0) })
                #expect(r.status == status, "\(method) \(uri)")
                let object = try Self.json(r) as? [String: Any]
                #expect(object?["error"] as? String == error, "\(method) \(uri): \(String(buffer: r.body))")
            }
            #expect(store.lastID == 1, "failed emits must store nothing")
            let next = try await Self.post(client, "/emit", #"{"type":"ok","parents":[1]}"#)
            #expect(String(buffer: next.body) == "{\"id\":2}\n", "a failed emit must not consume an id")
            let unknown = try await client.execute(uri: "/nope", method: .get)
            #expect(unknown.status == .notFound)
            #expect(String(buffer: unknown.body) == "404 page not found\n")
        }
    }

    @Test func treesFollowCelestialTreeOrderAndReferences() async throws {
        try await Self.withServer { store, client in
            // 1 genesis; 2 <- 1; 3 <- 1; 4 <- [3, 2] (diamond)
            _ = try await Self.post(client, "/emit", #"{"type":"a","parents":[1]}"#)
            _ = try await Self.post(client, "/emit", #"{"type":"b","parents":[1]}"#)
            _ = try await Self.post(client, "/emit", #"{"type":"c","parents":[3,2],"message":"m"}"#)
            let d = try await client.execute(uri: "/descendants/1", method: .get)
            #expect(String(buffer: d.body) == """
                {"id":1,"is_ref":false,"children":[{"id":2,"is_ref":false,"children":[{"id":4,"is_ref":false,"children":[]}]},\
                {"id":3,"is_ref":false,"children":[{"id":4,"is_ref":true,"children":null}]}]}\n
                """)
            let p = try await client.execute(uri: "/provenance/4", method: .get)
            #expect(String(buffer: p.body) == """
                {"id":4,"is_ref":false,"parents":[{"id":3,"is_ref":false,"parents":[{"id":1,"is_ref":false,"parents":[]}]},\
                {"id":2,"is_ref":false,"parents":[{"id":1,"is_ref":true,"parents":null}]}]}\n
                """)
            let meta = try Self.json(try await client.execute(uri: "/provenance/4?view=%20META%20", method: .get)) as? [String: Any]
            #expect(meta?["type"] as? String == "c")
            #expect(meta?["message"] as? String == "m")
            let batch = try Self.json(try await Self.post(client, "/descendants", #"{"ids":[3,2]}"#)) as? [[String: Any]]
            #expect(batch?.map { $0["id"] as? Int } == [3, 2])
            #expect(String(buffer: try await client.execute(uri: "/ancestors/4", method: .get).body) == "[1]\n")
            #expect(String(buffer: try await client.execute(uri: "/children/1", method: .get).body) == "[2,3]\n")
            #expect(String(buffer: try await client.execute(uri: "/heads", method: .get).body) == "[4]\n")
            #expect(String(buffer: try await client.execute(uri: "/roots", method: .get).body) == "[1]\n")
            let snapshot = try Self.json(try await client.execute(uri: "/snapshot", method: .get)) as? [String: Any]
            #expect(snapshot?["next_event_id"] as? Int == 5)
            #expect(snapshot?["edges"] as? Int == 4)
        }
    }

    @Test func deepChainsAreEncodedIterativelyAndTreesAreBounded() async throws {
        try await Self.withServer(treeNodesMax: 30_000) { store, client in
            let depth = 26_000
            var batch: [AppendRequest] = []
            for i in 0..<depth { batch.append(AppendRequest(type: "c", parents: [EventID(i + 1)])) }
            for chunk in stride(from: 0, to: depth, by: 5_000) {
                try await store.append(Array(batch[chunk..<min(chunk + 5_000, depth)]))
            }
            let tip = store.lastID
            let r = try await client.execute(uri: "/provenance/\(tip)", method: .get)
            #expect(r.status == .ok)
            let text = String(buffer: r.body)
            #expect(text.components(separatedBy: "\"id\":").count - 1 == depth + 1)
            let big = try await client.execute(uri: "/descendants/1?view=meta", method: .get)
            #expect(big.status == .ok)
            let limited = try await Self.post(client, "/provenance", "{\"ids\":[\(tip),\(tip)]}")
            #expect(limited.status == .badRequest, "two trees of 26,001 nodes exceed the 30,000 node limit together")
            #expect((try Self.json(limited) as? [String: Any])?["error"] as? String == "tree too large")
        }
    }
}
