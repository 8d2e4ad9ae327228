import Foundation
import Testing
import TestSupport
@testable import EventLog

struct RecoveryTests {
    @Test func reopenKeepsEventsIndexesAndSegments() async throws {
        var limits = Limits()
        limits.segmentEventsMax = 10
        let t = try await TempStore.make(limits: limits)
        defer { t.remove() }
        for i in 0..<35 {
            let parents: [EventID] = i == 0 ? [] : [EventID(i)]
            try await t.store.append([AppendRequest(type: i % 2 == 0 ? "even" : "odd", parents: parents, key: "k\(i)", stream: "s\(i % 3)")])
        }
        let before = try t.store.events(after: 0, limit: 100)
        t.store.close()
        let reopened = try await t.reopen(limits: limits)
        defer { reopened.close() }
        #expect(reopened.lastID == 35)
        #expect(try reopened.events(after: 0, limit: 100) == before)
        #expect(try reopened.stats().sealedSegments == 3)
        #expect(try reopened.events(stream: "s1", limit: 100).map(\.id) == [2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35])
        #expect(try reopened.events(type: "odd", limit: 3).map(\.id) == [34, 32, 30])
        // Appending after reopen continues the open segment and the dictionaries.
        let next = try await reopened.append([AppendRequest(type: "odd", parents: [35], key: "k35", stream: "s1")])
        #expect(next.results[0].id == 36)
        #expect(try reopened.events(type: "odd", limit: 1).map(\.id) == [36])
        let report = try reopened.verify()
        #expect(report.ok, "\(report.problems)")
        #expect(report.sealedSegments == 3)
    }

    @Test func readOnlyOpenSeesTheStoreAndRefusesAppends() async throws {
        let t = try await TempStore.make(genesis: true)
        defer { t.remove() }
        try await t.store.append([AppendRequest(type: "x", parents: [1])])
        let reader = try await t.reopen(readOnly: true)
        defer { reader.close() }
        #expect(reader.lastID == 2)
        #expect(try reader.event(1)?.type == "genesis")
        #expect(try reader.event(1)?.message == "CelestialTree begins.")
        await #expect(throws: LogError.self) { try await reader.append([AppendRequest(type: "y")]) }
    }

    @Test func aDamagedManifestIsRefusedOnOpen() async throws {
        var limits = Limits()
        limits.segmentEventsMax = 4
        let t = try await TempStore.make(limits: limits)
        defer { t.remove() }
        try await t.store.append((0..<9).map { AppendRequest(type: "e\($0)") })
        // Remove the first sealed segment's entry: the manifest no longer tiles the log.
        let batch = RocksWriteBatch()
        batch.delete(t.store.storage.cf(.meta), MetaKey.segment(1))
        try t.store.storage.db.write(batch, sync: true)
        t.store.close()
        await #expect(throws: LogError.self) { _ = try await t.reopen(limits: limits) }
    }

    @Test func verifyReportsADamagedIndexBlockAndOpenRefusesIt() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        try await t.store.append([AppendRequest(type: "a"), AppendRequest(type: "b", parents: [1])])
        try await t.store.append([AppendRequest(type: "c", parents: [2, 1], stream: "s")])
        #expect(try t.store.verify().ok)
        // Rewrite the second group's block with the wrong parents: a valid block that lies.
        let wrong = IndexBlock(first: 3, entries: [IndexBlock.Entry(type: 3, stream: 1, parents: [2])])
        let batch = RocksWriteBatch()
        batch.put(t.store.storage.cf(.index), KeySpace.id(3), wrong.encoded())
        try t.store.storage.db.write(batch, sync: true)
        let report = try t.store.verify()
        #expect(!report.ok)
        #expect(report.problems.contains { $0.contains("event 3: index lists parents [2], the record [2, 1]") }, "\(report.problems)")
        #expect(report.problems.count == 1, "\(report.problems)")
        // A missing block: the index no longer covers the log, so opening fails loudly.
        let drop = RocksWriteBatch()
        drop.delete(t.store.storage.cf(.index), KeySpace.id(3))
        try t.store.storage.db.write(drop, sync: true)
        #expect(!(try t.store.verify().ok))
        t.store.close()
        await #expect(throws: LogError.self) { _ = try await t.reopen() }
    }

    @Test func anIndexBlockRoundTripsAndDetectsDamage() throws {
        let block = IndexBlock(first: 40, entries: [
            IndexBlock.Entry(type: 1, stream: 0, parents: []),
            IndexBlock.Entry(type: 300, stream: 70_000, parents: [39, 2, 1]),
        ])
        var bytes = block.encoded()
        #expect(try IndexBlock.decode(first: 40, bytes) == block)
        #expect(throws: StorageError.self) { try IndexBlock.decode(first: 41, bytes) }
        bytes[3] ^= 0x10
        #expect(throws: StorageError.self) { try IndexBlock.decode(first: 40, bytes) }
    }
}
