import Foundation
import Synchronization
import Testing
import TestSupport
@testable import EventLog

/// The pipelined writer when RocksDB refuses a write (fault injection through
/// `StoreOptions.failWrite`): the stager has usually staged the next group on top of the failed
/// one by then, so that group must fail too, and the stager must start again from what was
/// written: ids, keys and dictionary ids of the failed groups are given back.
struct WriterFaultTests {
    final class Writes: Sendable {
        let attempts = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
    }

    @Test func failedWritesLoseOnlyTheirOwnAndLaterStagedGroups() async throws {
        let seed = SeededRandom.seed("WriterFaultTests")
        let path = try TempDir.make(#function)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let writes = Writes()
        var options = StoreOptions()
        options.durability = .never
        options.createGenesis = false
        // Every fifth write attempt fails.
        options.failWrite = { _ in
            let n = writes.attempts.add(1, ordering: .relaxed).newValue
            guard n % 5 == 0 else { return nil }
            writes.failed.add(1, ordering: .relaxed)
            return StorageError(.io, "injected write failure \(n)")
        }
        let store = try await EventStore.open(at: path, options: options)

        /// What each task saw acknowledged: key -> (id, type, stream).
        let outcomes = try await withThrowingTaskGroup(of: ([String: (EventID, String, String)], [String]).self) { tasks in
            for task in 0..<6 {
                tasks.addTask {
                    var rng = SeededRandom(seed: seed &+ UInt64(task))
                    var acked: [String: (EventID, String, String)] = [:]
                    var lost: [String] = []
                    var ackedKeys: [String] = []
                    for batch in 0..<40 {
                        let size = Int.random(in: 1...12, using: &rng)
                        // New type and stream names in many batches: their dictionary ids are
                        // allocated in groups that may fail.
                        let requests = (0..<size).map { k in
                            let type = Bool.random(using: &rng) ? "t\(task)-\(batch)" : "common-\(k % 3)"
                            let stream = "s\(task)-\(batch % 4)"
                            var r = AppendRequest(type: type, key: "k\(task)-\(batch)-\(k)", stream: stream, payload: .object([]))
                            if let parent = ackedKeys.last, Bool.random(using: &rng) { r.parentKeys = [parent] }
                            if k > 0 { r.parentKeys.append("k\(task)-\(batch)-\(k - 1)") }
                            return r
                        }
                        var stored = false
                        for _ in 0..<3 where !stored {
                            do {
                                let receipt = try await store.append(requests)
                                for (r, result) in zip(requests, receipt.results) {
                                    acked[r.key!] = (result.id, r.type, r.stream!)
                                    ackedKeys.append(r.key!)
                                }
                                stored = true
                            } catch let error as LogError where error.code == .storage {
                                continue  // retry with the same keys: never a duplicate
                            }
                        }
                        if !stored { lost += requests.map { $0.key! } }
                        await Task.yield()
                    }
                    return (acked, lost)
                }
            }
            var all: [([String: (EventID, String, String)], [String])] = []
            for try await outcome in tasks { all.append(outcome) }
            return all
        }
        let failed = writes.failed.load(ordering: .relaxed)
        #expect(failed > 0, "seed \(seed): no write failed, the test tested nothing")
        // The writer recovers: with one write in five failing and three attempts per batch,
        // nearly every batch gets stored (a writer stuck after a failure stores nothing more).
        let lostKeys = outcomes.reduce(0) { $0 + $1.1.count }
        let ackedKeys = outcomes.reduce(0) { $0 + $1.0.count }
        #expect(lostKeys * 4 < ackedKeys, "seed \(seed): \(lostKeys) events lost, \(ackedKeys) stored")

        var ids = Set<EventID>()
        for (acked, lost) in outcomes {
            for (key, (id, type, stream)) in acked {
                #expect(ids.insert(id).inserted, "seed \(seed): id \(id) acknowledged twice")
                let event = try store.event(id)
                #expect(event?.key == key && event?.type == type && event?.stream == stream, "seed \(seed): event \(id)")
                #expect(try store.id(forKey: key) == id)
            }
            for key in lost { #expect(try store.id(forKey: key) == nil, "seed \(seed): lost key \(key) was stored") }
        }
        // Ids stay dense: exactly the acknowledged events exist.
        #expect(store.lastID == EventID(ids.count), "seed \(seed): last id \(store.lastID), \(ids.count) acknowledged")
        for (acked, _) in outcomes {
            for (_, (id, type, _)) in acked.prefix(20) {
                #expect(try store.events(type: type, limit: 1_000).contains { $0.id == id }, "seed \(seed): \(id) not listed under \(type)")
            }
        }
        var report = try store.verify()
        #expect(report.ok, "seed \(seed): \(report.problems)")
        store.close()

        let reopened = try await EventStore.open(at: path, options: StoreOptions())
        defer { reopened.close() }
        #expect(reopened.lastID == EventID(ids.count))
        report = try reopened.verify()
        #expect(report.ok, "seed \(seed) after reopening: \(report.problems)")
        print("WriterFaultTests: seed \(seed), \(failed) injected write failures, \(ids.count) events acknowledged")
    }

    /// Background syncs (`--fsync interval`) that keep failing: each is counted; past
    /// `Applier.syncFailuresMax` in a row appends are refused (nothing stored), and they are taken
    /// again once a sync succeeds.
    @Test func appendsAreRefusedWhileTheWALCannotBeSynced() async throws {
        let path = try TempDir.make(#function)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let failing = Atomic(true)
        let failures = Atomic(0)
        var options = StoreOptions()
        options.durability = .interval
        options.syncInterval = .milliseconds(20)
        options.createGenesis = false
        options.failSync = {
            guard failing.load(ordering: .relaxed) else { return nil }
            failures.add(1, ordering: .relaxed)
            return StorageError(.io, "injected fsync failure")
        }
        let store = try await EventStore.open(at: path, options: options)
        defer { store.close() }
        let first = try await store.append([AppendRequest(type: "before")])
        #expect(first.results[0].id == 1 && !first.durable)
        // Wait for enough failed background syncs.
        let deadline = ContinuousClock.now + .seconds(10)
        while failures.load(ordering: .relaxed) < Applier.syncFailuresMax, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(failures.load(ordering: .relaxed) >= Applier.syncFailuresMax)
        do {
            _ = try await store.append([AppendRequest(type: "refused", key: "r")])
            Issue.record("an append was taken while the WAL could not be synced")
        } catch let error as LogError {
            #expect(error.message.contains("could not be synced"), "\(error)")
        }
        #expect(store.lastID == 1)
        failing.store(false, ordering: .relaxed)
        var taken: AppendReceipt?
        while taken == nil, ContinuousClock.now < deadline + .seconds(10) {
            taken = try? await store.append([AppendRequest(type: "after", key: "r")])
            if taken == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(taken?.results.first?.id == 2, "appends are taken again once a sync succeeds")
        #expect(try store.verify().ok)
    }
}
