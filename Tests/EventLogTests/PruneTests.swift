import Foundation
import Testing
import TestSupport
@testable import EventLog

/// Pruning below a snapshot at the store level: what goes (whole sealed segments), what every
/// read below the cut answers, that counters, walks and `verify` agree before and after a reopen,
/// that retried keyed appends of pruned events stay duplicates, and that a pruned node still
/// ships and applies groups above its cut.
struct PruneTests {
    /// The counters a pruned store keeps incrementally must equal what `verify` counts afresh.
    static func expectCountsAgree(_ store: EventStore, _ context: String) throws {
        let report = try store.verify()
        #expect(report.ok, "\(context): \(report.problems)")
        let stats = try store.stats()
        #expect(UInt64(stats.roots) == report.roots, "\(context): roots")
        #expect(UInt64(stats.heads) == report.heads, "\(context): heads")
        #expect(report.events == store.lastID - store.firstID + 1, "\(context): events")
        #expect(report.prunedBelow == (store.firstID > 1 ? store.firstID : nil), "\(context): prunedBelow")
    }

    /// Ancestors, descendants, roots and heads as seen from the live part of the log.
    static func walks(_ store: EventStore) throws -> [String] {
        let first = store.firstID
        var lines = ["roots \(try store.roots())", "heads \(try store.heads())"]
        for id in stride(from: first, through: store.lastID, by: 37) {
            lines.append("a\(id) \(try store.ancestors(of: id) ?? [])")
            lines.append("d\(id) \(try store.descendants(of: id) ?? [])")
        }
        return lines
    }

    @Test func pruneRemovesWholeSegmentsAndReadsBelowSayWhere() async throws {
        let path = try TempDir.make("prune")
        defer { try? FileManager.default.removeItem(atPath: path) }
        var store = try await CompactionTests.open(path)
        try await CompactionTests.fill(store)
        // Events that name parents far back, so the cut leaves links into the pruned prefix.
        try await store.append((0..<10).map { AppendRequest(type: "late", parents: [EventID(3 + $0 * 20)], key: "late\($0)") })
        let last = store.lastID
        let before = try (201...last).map { try #require(try store.event($0)) }
        try Self.expectCountsAgree(store, "before")

        let result = try store.prune(below: 230, snapshot: "snap-230.bsnap")
        #expect(result.firstID == 201, "segments of 50 seal at 50, 100, ..., 200")
        #expect(result.eventsRemoved == 200 && result.segmentsRemoved == 4)
        #expect(result.bytesAfter < result.bytesBefore)
        #expect(store.firstID == 201)
        let error = try #require(throws: LogError.self) { try store.event(200) }
        #expect(error.code == .pruned)
        #expect(error.message.contains("holds ids from 201") && error.message.contains("snap-230.bsnap"), "\(error.message)")
        #expect(throws: LogError.self) { try store.events(type: "build", before: 150, limit: 10) }
        for direction in [Traversal.Direction.ancestors, .descendants] {
            // A walk from a pruned id goes nowhere (and does not trap).
            var walk = store.traversal(direction, from: 100)
            var reached = 0
            walk.breadthFirst { _, _ in
                reached += 1
                return .follow
            }
            #expect(reached == 0, "\(direction)")
        }
        #expect(throws: LogError.self) { try store.events(after: 0, limit: 10) }
        // A reader refuses pruned ids as `event` does; a forward read skips them.
        try store.withReader(from: 150, through: 260) { reader in
            let live = try reader.event(240)
            #expect(live?.id == 240)
            do {
                _ = try reader.event(199)
                Issue.record("a pruned id was read")
            } catch {
                #expect((error as? LogError)?.code == .pruned)
            }
        }
        var walked: [EventID] = []
        try store.forEachEvent(ascending: [100, 199, 201, 202]) { walked.append($0.id) }
        #expect(walked == [201, 202])
        #expect(throws: LogError.self) { try store.ancestors(of: 10) }
        #expect(throws: LogError.self) { try store.shippableGroups(after: 0, bytesMax: 1 << 16) }
        #expect(try store.events(after: 200, limit: 1).first?.id == 201)
        #expect(try (201...last).map { try #require(try store.event($0)) } == before)
        // Walks stop at the cut: a late event's pruned parent is not in its ancestors.
        let lateAncestors = try #require(try store.ancestors(of: last))
        #expect(lateAncestors.isEmpty, "its only parent, 183, was pruned")
        #expect(try store.parents(of: last) == [183], "the link itself stays")
        try Self.expectCountsAgree(store, "after prune")
        let walks = try Self.walks(store)

        // A retry of a pruned keyed event is a duplicate: its key alone decides, since its content
        // can no longer be compared (this one even differs).
        let retry = try await store.append([AppendRequest(type: "build", parents: [9], key: "k10", stream: "s2")])
        #expect(retry.results == [AppendResult(id: 12, duplicate: true)])

        store.close()
        store = try await CompactionTests.open(path)
        #expect(store.firstID == 201)
        #expect(try Self.walks(store) == walks, "the reloaded index answers as the pruned one did")
        try Self.expectCountsAgree(store, "after reopen")
        #expect(try (201...last).map { try #require(try store.event($0)) } == before)
        // Appends after the reopen link to live and pruned parents alike; counters stay exact.
        let receipt = try await store.append([
            AppendRequest(type: "next", parents: [150], key: "n1"), AppendRequest(type: "next", parents: [last], key: "n2"),
        ])
        #expect(receipt.results.map(\.duplicate) == [false, false])
        try Self.expectCountsAgree(store, "after appends")
        #expect(try await store.append([AppendRequest(type: "late", parents: [23], key: "late1")]).results.first?.duplicate == true)

        // A second prune moves the cut further and keeps counting what went.
        let second = try store.prune(below: 360, snapshot: "snap-360.bsnap")
        #expect(second.firstID == 351 && second.eventsRemoved == 150)
        try Self.expectCountsAgree(store, "second prune")
        #expect(store.pruned?.keysBelow == 349, "keys k0...k348 name ids 2...350; genesis has none")
        #expect(store.pruned?.archives == [.init(firstID: 201, name: "snap-230.bsnap"), .init(firstID: 351, name: "snap-360.bsnap")])
        // Each pruned id names the archive that holds it.
        let inFirst = try #require(throws: LogError.self) { try store.event(150) }
        let inSecond = try #require(throws: LogError.self) { try store.event(300) }
        #expect(inFirst.message.contains("snap-230.bsnap") && inSecond.message.contains("snap-360.bsnap"), "\(inFirst.message) / \(inSecond.message)")
        store.close()
        store = try await CompactionTests.open(path)
        try Self.expectCountsAgree(store, "second reopen")
        store.close()
    }

    /// Appends keep running while a prune moves the first id: the root and head counters the two
    /// both change stay exact (they share the index's change lock).
    @Test func appendsDuringAPruneKeepTheCountersExact() async throws {
        let path = try TempDir.make("prune-concurrent")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try await CompactionTests.open(path)
        defer { store.close() }
        try await CompactionTests.fill(store)
        let seed = SeededRandom.seed("appendsDuringAPruneKeepTheCountersExact")
        let appends = Task {
            var rng = SeededRandom(seed: seed)
            for batch in 0..<200 {
                // Parents anywhere, pruned or not: links to parents about to be pruned race the prune.
                let parents = (0..<3).map { _ in EventID(1 + rng.next() % 400) }
                try await store.append([AppendRequest(type: "racing", parents: Array(Set(parents)), key: "r\(batch)")])
            }
        }
        for cut in [100, 200, 300] { _ = try store.prune(below: EventID(cut), snapshot: "s\(cut).bsnap") }
        try await appends.value
        #expect(store.firstID == 301)
        try Self.expectCountsAgree(store, "after racing appends")
    }

    /// A pruned follower may be cut back to its first id, never into the pruned prefix: the log
    /// must keep an event to keep its last id.
    @Test func truncationStopsAtTheFirstID() async throws {
        let path = try TempDir.make("prune-truncate")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let leaderPath = try TempDir.make("prune-truncate-leader")
        defer { try? FileManager.default.removeItem(atPath: leaderPath) }
        let leader = try await CompactionTests.open(leaderPath)
        defer { leader.close() }
        try await CompactionTests.fill(leader)
        var follower = try await CompactionTests.open(path, role: .follower)
        try ReplicationStoreTests.ship(from: leader, to: follower)
        #expect(try follower.prune(below: 300, snapshot: "f.bsnap").firstID == 301)
        let error = try #require(throws: LogError.self) { try follower.truncate(after: 300) }
        #expect(error.code == .pruned)
        #expect(try follower.truncate(after: 301) == 100)
        follower.close()
        follower = try await CompactionTests.open(path, role: .follower)
        defer { follower.close() }
        #expect(follower.lastID == 301 && follower.firstID == 301)
        try Self.expectCountsAgree(follower, "after truncation")
    }

    /// A crash after the prune's first write leaves records below the cut: `verify` says so (a
    /// note, not a problem: no read sees them) and the next writable open removes them.
    @Test func aPruneCutShortIsFinishedOnOpen() async throws {
        let path = try TempDir.make("prune-cut")
        defer { try? FileManager.default.removeItem(atPath: path) }
        var store = try await CompactionTests.open(path)
        try await CompactionTests.fill(store)
        let kept = try (90...120).map { id in (id, try #require(try store.storage.record(EventID(id)))) }
        #expect(try store.prune(below: 120, snapshot: "s.bsnap").firstID == 101)
        try store.storage.db.write({
            let batch = RocksWriteBatch()
            for (id, record) in kept where id < 101 { batch.put(store.storage.cf(.log), KeySpace.id(EventID(id)), record) }
            return batch
        }(), sync: true)
        var report = try store.verify()
        #expect(report.ok, "\(report.problems)")
        #expect(report.notes.contains { $0.contains("11 records below the pruned prefix") }, "\(report.notes)")
        store.close()
        store = try await CompactionTests.open(path)
        defer { store.close() }
        report = try store.verify()
        #expect(report.ok && report.notes.isEmpty, "\(report.notes)")
        #expect(try store.storage.record(95) == nil)
    }

    @Test func nothingToPruneAndBadRequestsChangeNothing() async throws {
        let path = try TempDir.make("prune-none")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try await CompactionTests.open(path)
        defer { store.close() }
        try await CompactionTests.fill(store)
        let none = try store.prune(below: 40, snapshot: "s.bsnap")
        #expect(none.firstID == 1 && none.eventsRemoved == 0 && none.note != nil)
        #expect(throws: LogError.self) { try store.prune(below: store.lastID + 1, snapshot: "s.bsnap") }
        #expect(throws: LogError.self) { try store.prune(below: 300, snapshot: "") }
        #expect(store.firstID == 1 && store.pruned == nil)
        #expect(try store.verify().ok)
    }

    /// A pruned follower keeps applying the leader's groups, including events whose parents it
    /// pruned; a leader pruned below a follower's position still ships from there.
    @Test func prunedNodesKeepReplicating() async throws {
        let (lp, fp) = (try TempDir.make("prune-leader"), try TempDir.make("prune-follower"))
        defer { try? FileManager.default.removeItem(atPath: lp); try? FileManager.default.removeItem(atPath: fp) }
        let leader = try await CompactionTests.open(lp)
        let follower = try await CompactionTests.open(fp, role: .follower)
        defer { leader.close(); follower.close() }
        try await CompactionTests.fill(leader)
        try ReplicationStoreTests.ship(from: leader, to: follower)
        #expect(try follower.prune(below: 300, snapshot: "f.bsnap").firstID == 301)
        #expect(try leader.prune(below: 200, snapshot: "l.bsnap").firstID == 201)
        try await leader.append((0..<60).map { AppendRequest(type: "more", parents: [EventID(5 + $0)], key: "m\($0)") })
        try ReplicationStoreTests.ship(from: leader, to: follower)
        #expect(follower.lastID == leader.lastID)
        #expect(try follower.events(after: 300, limit: 1000) == leader.events(after: 300, limit: 1000))
        try Self.expectCountsAgree(follower, "follower")
        try Self.expectCountsAgree(leader, "leader")
    }
}
