import EventLog
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import BanyanServer

struct MaintenanceRouteTests {
    /// One job at a time: while one runs, a snapshot request is 409 naming it, and nothing is
    /// written or recorded; once it ends the next one runs.
    @Test func aSecondJobIsRefusedWithTheRunningOne() async throws {
        try await CelestialTreeRoutesTests.withBanyanServer { server, client in
            let store = server.store
            let running = try server.jobs.begin("snapshot", requestedBy: "someone else")
            let refused = try await client.execute(uri: "/v1/admin/snapshots", method: .post)
            #expect(refused.status == .conflict)
            let body = try #require(try JSONSerialization.jsonObject(with: Data(buffer: refused.body)) as? [String: Any])
            #expect(body["error"] as? String == "job running")
            #expect((body["job"] as? [String: Any])?["id"] as? String == running.id)
            #expect(store.lastID == 1, "nothing recorded")
            #expect(!FileManager.default.fileExists(atPath: store.path + "/snapshots"), "nothing written")

            server.jobs.end(running.id, failed: true, result: .string("test"))
            let taken = try await client.execute(uri: "/v1/admin/snapshots", method: .post)
            #expect(taken.status == .created)
            let jobs = try #require(try JSONSerialization.jsonObject(with: Data(buffer: try await client.execute(uri: "/v1/admin/jobs", method: .get).body)) as? [String: Any])
            let recent = try #require(jobs["recent"] as? [[String: Any]])
            #expect(recent.map { $0["state"] as? String } == ["finished", "failed"])
        }
    }
}
