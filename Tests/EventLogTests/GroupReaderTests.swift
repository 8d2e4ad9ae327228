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

        var reader = try GroupReader(storage: store.storage, index: store.index, after: 0)
        var read: [CommitGroup] = []
        try reader.read(upTo: store.lastID) { read.append($0); return true }
        #expect(read.count == applied.count, "seed \(seed)")
        for (a, b) in zip(read, applied) {
            #expect(a == b, "seed \(seed): group \(b.first)...\(b.last) reads back differently")
        }

        // From any group boundary, after a reopen (the index rebuilt from storage).
        store.close()
        let reopened = try await EventStore.open(at: path, options: StoreOptions())
        defer { reopened.close() }
        let middle = applied[applied.count / 2]
        var fromMiddle = try GroupReader(storage: reopened.storage, index: reopened.index, after: middle.last)
        // Read one group per call: each call starts its own iterator where the last one stopped.
        for expected in applied[(applied.count / 2 + 1)...].prefix(3) {
            var group: CommitGroup?
            try fromMiddle.read(upTo: reopened.lastID) { group = $0; return false }
            #expect(group == expected, "seed \(seed)")
        }
        if middle.count > 1 {
            var inside = try GroupReader(storage: reopened.storage, index: reopened.index, after: middle.first)
            #expect(throws: StorageError.self) { try inside.read(upTo: reopened.lastID) { _ in true } }
        }
    }
}
