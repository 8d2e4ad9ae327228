import Foundation
import Testing
import TestSupport
@testable import EventLog

/// Compaction at the store level: what it drops and keeps, how reads and retries see a compacted
/// event, that segments and `verify` stay sound, resuming a cut-off run, and shipping compacted
/// records to a follower.
struct CompactionTests {
    static func open(_ path: String, role: StoreRole = .leader) async throws -> EventStore {
        var options = StoreOptions()
        options.durability = .never
        options.role = role
        options.limits.segmentEventsMax = 50
        return try await EventStore.open(at: path, options: options)
    }

    /// 400 events in 4 streams and 2 types, with keys, messages and payloads, chained by parents.
    static func fill(_ store: EventStore) async throws {
        for batch in 0..<8 {
            try await store.append((0..<50).map { i in
                let n = batch * 50 + i
                return AppendRequest(
                    type: n % 2 == 0 ? "build" : "test", parents: [EventID(max(1, n))], key: "k\(n)", stream: "s\(n % 4)",
                    message: "message \(n)", payload: .object([JSONMember(key: "n", value: .int(n))]))
            })
        }
    }

    static func wire(_ event: Event) -> String {
        String(decoding: EventJSON.encode(event).bytes, as: UTF8.self)
    }

    @Test func compactionDropsContentKeepsTheSkeletonAndStaysVerifiable() async throws {
        let path = try TempDir.make("compaction")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try await Self.open(path)
        defer { store.close() }
        try await Self.fill(store)
        let segmentsBefore = try store.storage.segments()
        #expect(segmentsBefore.count >= 7)
        let before = try (1...store.lastID).map { try #require(try store.event($0)) }

        let spec = CompactionSpec(before: 300, through: store.lastID, stream: "s1")
        let result = try store.compact(spec, control: 0)
        #expect(result.examined == 299)
        #expect(result.compacted == 75, "ids 2...299 in stream s1")
        #expect(result.recordBytesAfter < result.recordBytesBefore)
        for old in before {
            let now = try #require(try store.event(old.id))
            let dropped = spec.matches(old) && (old.message != nil || old.payload != nil)
            var skeleton = old
            if dropped {
                skeleton.message = nil
                skeleton.payload = nil
                skeleton.compaction = now.compaction
                #expect(now.compaction?.matches(message: old.message, payload: old.payload) == true)
                #expect(Self.wire(now).hasSuffix(#","compacted":true,"dropped":{"message_bytes":\#(old.message!.utf8.count),"message_crc32c":\#(CRC32C.checksum(Array(old.message!.utf8))),"payload_bytes":\#(old.payload!.count),"payload_crc32c":\#(CRC32C.checksum(old.payload!))}}"#))
            }
            #expect(now == skeleton, "event \(old.id)")
        }
        #expect(try store.storage.segments() == segmentsBefore, "seals are untouched")
        let report = try store.verify()
        #expect(report.ok, "\(report.problems)")
        #expect(report.compacted == 75)

        // Again: nothing more to do.
        #expect(try store.compact(spec, control: 0).compacted == 0)

        // A keyed retry of a compacted event is a duplicate; different content is a conflict.
        let old = before[6]  // id 7 (id 1 is genesis): n = 5, stream s1
        let stored = try store.event(7)
        #expect(old.stream == "s1" && stored?.compaction != nil)
        let retry = AppendRequest(type: old.type, parents: old.parents, key: old.key, stream: old.stream, message: old.message, payload: .object([JSONMember(key: "n", value: .int(5))]))
        let receipt = try await store.append([retry])
        #expect(receipt.results == [AppendResult(id: 7, duplicate: true)])
        var changed = retry
        changed.message = "another message"
        await #expect(throws: LogError.self) { try await store.append([changed]) }

        // After a reopen, the same.
        store.close()
        let reopened = try await Self.open(path)
        defer { reopened.close() }
        #expect(try reopened.event(7)?.compaction != nil)
        #expect(try reopened.verify().ok)
    }

    @Test func olderThanAndTypeSelectByTimeAndType() async throws {
        let path = try TempDir.make("compactionTime")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try await Self.open(path)
        defer { store.close() }
        try await store.append((1...20).map { AppendRequest(type: $0 % 2 == 0 ? "a" : "b", payload: .int($0), timeUnixNano: Int64($0) * 1_000) })
        let result = try store.compact(CompactionSpec(olderThanUnixNano: 10_500, through: store.lastID, type: "a"), control: 0)
        // ids 2...21 carry times 1000...20000; type a and time < 10500: n = 2, 4, 6, 8, 10.
        #expect(result.compacted == 5)
        let compacted = try (1...store.lastID).filter { try store.event($0)?.compaction != nil }
        #expect(compacted == [3, 5, 7, 9, 11])
    }

    /// A run cut off after its first batches resumes from its progress mark, and the log's
    /// control events say what is pending until a run for them finishes.
    @Test func aCutOffRunResumesAndControlEventsArePendingUntilDone() async throws {
        let path = try TempDir.make("compactionResume")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try await Self.open(path)
        defer { store.close() }
        try await Self.fill(store)
        let spec = CompactionSpec(before: 380, through: store.lastID)
        let control = try await store.append([
            AppendRequest(type: EventStore.compactionEventType, stream: "banyan.maintenance", payload: .object([JSONMember(key: "spec", value: spec.json())]))
        ]).results[0].id
        try await store.append([AppendRequest(type: EventStore.compactionEventType, stream: "elsewhere", payload: .object([JSONMember(key: "spec", value: spec.json())]))])
        let pending = try store.pendingCompactions()
        #expect(pending.map(\.control) == [control], "only the maintenance stream's control events count")
        #expect(pending.first?.spec == spec)

        var partial = CompactionResult()
        try store.compactBatch(spec, ids: 1...100, control: control, into: &partial)
        #expect(partial.compacted == 100, "ids 1...100, genesis (a message) included")
        let resumed = try store.compact(spec, control: control)
        #expect(resumed.examined == 279, "ids 101...379 only")
        #expect(try (1...379).allSatisfy { try store.event($0)?.compaction != nil })
        #expect(try store.event(380)?.compaction == nil)
        #expect(store.compactionDone == control)
        #expect(try store.pendingCompactions().isEmpty)
        #expect(try store.verify().ok)
    }

    /// Compacted records ship verbatim: a follower that pulls after the leader compacted holds
    /// the same bytes, and verifies.
    @Test func aFollowerAppliesCompactedRecordsVerbatim() async throws {
        let (lp, fp) = (try TempDir.make("compLeader"), try TempDir.make("compFollower"))
        defer { for p in [lp, fp] { try? FileManager.default.removeItem(atPath: p) } }
        let leader = try await Self.open(lp)
        let follower = try await Self.open(fp, role: .follower)
        defer { leader.close(); follower.close() }
        try await Self.fill(leader)
        _ = try leader.compact(CompactionSpec(before: 200, through: leader.lastID), control: 0)
        try ReplicationStoreTests.ship(from: leader, to: follower, bytesMax: 4_096)
        #expect(try ReplicationStoreTests.contents(follower) == ReplicationStoreTests.contents(leader))
        #expect(try follower.verify().ok)
        #expect(try follower.event(150)?.compaction != nil)
    }

    /// An export says which events are compacted; importing it back into the same store changes
    /// nothing, and into a new store gives the events without their content.
    @Test func exportsOfCompactedStoresImport() async throws {
        let (path, other) = (try TempDir.make("compactionExport"), try TempDir.make("compactionImport"))
        defer { for p in [path, other] { try? FileManager.default.removeItem(atPath: p) } }
        let store = try await Self.open(path)
        defer { store.close() }
        try await Self.fill(store)
        _ = try store.compact(CompactionSpec(before: 100, through: store.lastID), control: 0)
        var bytes: [UInt8] = []
        _ = try store.exportJSONL { bytes += $0 }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        #expect(lines[49].contains(#""compacted":true,"dropped":{"message_bytes":"#) && !lines[49].contains("payload\":"))
        let file = path + ".jsonl"
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let again = try await store.importJSONL(path: file)
        #expect(again.appended == 0 && again.duplicates == Int(store.lastID))

        var options = StoreOptions()
        options.durability = .never
        options.createGenesis = false
        let copy = try await EventStore.open(at: other, options: options)
        defer { copy.close() }
        let summary = try await copy.importJSONL(path: file)
        #expect(summary.appended == Int(store.lastID))
        let rerun = try await copy.importJSONL(path: file)
        #expect(rerun.appended == 0 && rerun.duplicates == Int(store.lastID), "re-running the import changes nothing")
        let imported = try #require(try copy.event(50))
        #expect(imported.payload == nil && imported.message == nil && imported.compaction == nil)
        #expect(try copy.event(100)?.payload == store.event(100)?.payload)
        #expect(try copy.verify().ok)
    }

    /// A failover that cuts a compaction's control event off a follower stops that compaction:
    /// the new leader never asked for it.
    @Test func aTruncationThatCutsTheControlEventStopsTheRun() async throws {
        let (lp, fp) = (try TempDir.make("cutLeader"), try TempDir.make("cutFollower"))
        defer { for p in [lp, fp] { try? FileManager.default.removeItem(atPath: p) } }
        let leader = try await Self.open(lp)
        let follower = try await Self.open(fp, role: .follower)
        defer { leader.close(); follower.close() }
        try await Self.fill(leader)
        let spec = CompactionSpec(before: 300, through: leader.lastID)
        let control = try await leader.append([
            AppendRequest(type: EventStore.compactionEventType, stream: "banyan.maintenance", payload: .object([JSONMember(key: "spec", value: spec.json())]))
        ]).results[0].id
        try ReplicationStoreTests.ship(from: leader, to: follower)
        let start = follower.truncation(since: 0).count
        var partial = CompactionResult()
        try follower.compactBatch(spec, ids: 1...100, control: control, truncations: start, into: &partial)
        #expect(partial.compacted == 100)
        _ = try follower.truncate(after: control - 1)
        #expect(throws: LogError.self) { try follower.compactBatch(spec, ids: 101...200, control: control, truncations: start, into: &partial) }
        #expect(throws: LogError.self) { _ = try follower.compact(spec, control: control) }
        #expect(try follower.event(150)?.compaction == nil, "nothing past the cut was rewritten")
        #expect(follower.compactionDone < control)
        #expect(try follower.verify().ok)
    }
}
