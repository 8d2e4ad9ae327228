import Foundation
import Synchronization
import Testing
import TestSupport
@testable import EventLog

/// A leader ships its log by reading groups back from storage: each must be exactly the group
/// the applier wrote.
struct GroupReaderTests {
    final class Recorded: Sendable {
        let groups = Mutex<[CommitGroup]>([])
    }

    @Test func groupsReadBackFromStorageAreTheGroupsApplied() async throws {
        let seed = SeededRandom.seed("GroupReaderTests")
        let path = try TempDir.make(#function)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let recorded = Recorded()
        var options = StoreOptions()
        options.durability = .never
        options.limits.segmentEventsMax = 50
        options.onApplied = { group in recorded.groups.withLock { $0.append(group) } }
        let store = try await EventStore.open(at: path, options: options)
        // Concurrent clients, so groups hold several batches; batches that fail leave no trace.
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for client in 0..<4 {
                tasks.addTask {
                    var rng = SeededRandom(seed: seed &+ UInt64(client))
                    for batch in 0..<60 {
                        let requests = CommitGroupTests.randomBatch(&rng, lastID: store.lastID, batch: batch * 10 + client)
                        _ = try? await store.append(requests)
                    }
                }
            }
            try await tasks.waitForAll()
        }
        let applied = recorded.groups.withLock { $0 }
        #expect(applied.contains { $0.entries.count > 1 } && applied.contains { !$0.seals.isEmpty } && applied.contains { !$0.names.isEmpty })

        var read: [CommitGroup] = []
        do {
            // The scan's iterator must be gone before the store closes.
            var reader = try GroupReader(storage: store.storage, index: store.index, after: 0)
            var scan: GroupReader.Scan?
            while let group = try reader.next(upTo: store.lastID, scan: &scan) { read.append(group) }
        }
        #expect(read.count == applied.count, "seed \(seed)")
        for (a, b) in zip(read, applied) {
            #expect(a == b, "seed \(seed): group \(b.first)...\(b.last) reads back differently")
        }

        // From any group boundary, after a reopen (the index rebuilt from storage).
        store.close()
        let reopened = try await EventStore.open(at: path, options: StoreOptions())
        defer { reopened.close() }
        let middle = applied[applied.count / 2]
        do {
            var fromMiddle = try GroupReader(storage: reopened.storage, index: reopened.index, after: middle.last)
            var scan: GroupReader.Scan?
            #expect(try fromMiddle.next(upTo: reopened.lastID, scan: &scan) == applied[applied.count / 2 + 1])
            // Another reader's scan is somewhere else: not reused, and the group still reads right.
            var fromStart = try GroupReader(storage: reopened.storage, index: reopened.index, after: 0)
            #expect(try fromStart.next(upTo: reopened.lastID, scan: &scan) == applied[0])
            if middle.count > 1 {
                var inside = try GroupReader(storage: reopened.storage, index: reopened.index, after: middle.first)
                var insideScan: GroupReader.Scan?
                #expect(throws: StorageError.self) { _ = try inside.next(upTo: reopened.lastID, scan: &insideScan) }
            }
        }
    }
}
