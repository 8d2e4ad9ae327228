import Foundation
import Synchronization
import Testing
import TestSupport
@testable import EventLog

/// The staged-key tables answer as a map from key bytes to id would, whatever the hashes; and the
/// sequencer finds keys of its own group and of groups handed on but not yet written through them.
struct StagedKeysTests {
    /// Random inserts, lookups and newest-first removals against a dictionary. The hashes are
    /// drawn from a handful of values, so most keys collide and probe chains are long; `expected`
    /// is too small, so the table also grows.
    @Test func itAnswersAsAMapWouldWithCollidingHashesAndGrowth() {
        let seed = SeededRandom.seed("StagedKeysTests.model")
        var rng = SeededRandom(seed: seed)
        var table = StagedKeys()
        var keys: [(key: String, id: EventID)] = []
        var hashes: [UInt64] = []
        var model: [KeyBytes: EventID] = [:]
        var hashOf: [KeyBytes: UInt64] = [:]
        var nextID: EventID = 1
        for step in 0..<20_000 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<6:
                let key = "k\(Int.random(in: 0..<5_000, using: &rng))"
                guard model[KeyBytes(key)] == nil else { continue }
                let hash = UInt64.random(in: 0..<8, using: &rng) << 32 | UInt64(key.utf8.count)
                table.insert(position: keys.count, hash: hash, expected: 16)
                keys.append((key, nextID))
                hashes.append(hash)
                model[KeyBytes(key)] = nextID
                hashOf[KeyBytes(key)] = hash
                nextID += 1
            case 6:
                // A rolled-back batch: its keys go, newest first.
                for _ in 0..<min(keys.count, Int.random(in: 0...5, using: &rng)) {
                    table.removeNewest(position: keys.count - 1, hash: hashes.removeLast())
                    let key = KeyBytes(keys.removeLast().key)
                    model.removeValue(forKey: key)
                    hashOf.removeValue(forKey: key)
                }
            default:
                let key = "k\(Int.random(in: 0..<5_000, using: &rng))"
                let hash = hashOf[KeyBytes(key)] ?? UInt64.random(in: 0..<8, using: &rng) << 32 | UInt64(key.utf8.count)
                let found = table.find(key, hash: hash, in: keys)
                #expect(found == model[KeyBytes(key)], "seed \(seed), step \(step), key \(key)")
            }
            #expect(table.count == model.count, "seed \(seed), step \(step)")
        }
        #expect(model.count > 100, "seed \(seed): the table held \(model.count) keys at the end")
        for (i, entry) in keys.enumerated() {
            #expect(table.find(entry.key, hash: hashes[i], in: keys) == entry.id, "seed \(seed): \(entry.key)")
        }
    }

    /// Keys compare by bytes: NFC "é" and NFD "e" + U+0301 are two keys even with one hash.
    @Test func canonicallyEquivalentKeysAreTwoKeys() {
        var table = StagedKeys()
        let keys: [(key: String, id: EventID)] = [("caf\u{E9}", 1), ("cafe\u{301}", 2)]
        table.insert(position: 0, hash: 7, expected: 2)
        #expect(table.find("cafe\u{301}", hash: 7, in: keys) == nil)
        table.insert(position: 1, hash: 7, expected: 2)
        #expect(table.find("caf\u{E9}", hash: 7, in: keys) == 1 && table.find("cafe\u{301}", hash: 7, in: keys) == 2)
    }

    /// A group held in its write: the groups staged on top of it find its keys (retries are
    /// duplicates with its ids, other content is a conflict, parent keys resolve), as they find
    /// keys staged earlier in their own group; a batch rolled back leaves its keys free.
    @Test func groupsStagedOnAnUnwrittenGroupFindItsKeys() async throws {
        let node = CommitGroupTests.Node(record: false)
        let held = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        node.storage.beforeWrite = { group in
            if group.first == 1 {
                held.signal()
                release.wait()
            }
        }
        let sequencer = node.sequencer(limits: Limits())
        // The stager waits after the first group until the other batches are queued, so it hands
        // that group to the committer instead of writing it itself (which it does when idle).
        let staged = Mutex(0)
        let stagerHeld = DispatchSemaphore(value: 0), proceed = DispatchSemaphore(value: 0)
        sequencer.afterStaging = { batches in
            if staged.withLock({ $0 += batches; return $0 }) == 1 {
                stagerHeld.signal()
                proceed.wait()
            }
        }
        sequencer.start()
        defer { sequencer.close() }
        let first = Task { try await sequencer.submit((0..<100).map { AppendRequest(type: "t", key: "a\($0)", payload: .int(Int64($0))) }, durability: nil) }
        await Task.detached { stagerHeld.wait() }.value
        let retry = Task { try await sequencer.submit((0..<100).map { AppendRequest(type: "t", key: "a\($0)", payload: .int(Int64($0))) }, durability: nil) }
        let children = Task {
            try await sequencer.submit([
                AppendRequest(type: "c", parentKeys: ["a7", "a3"], key: "c1"),
                AppendRequest(type: "c", parentKeys: ["c1"], key: "c2"),
                AppendRequest(type: "c", parentKeys: ["c1"], key: "c2"),
            ], durability: nil)
        }
        let conflict = Task { try await sequencer.submit([AppendRequest(type: "t", key: "a5", payload: .int(6))], durability: nil) }
        let rolledBack = Task {
            try await sequencer.submit([AppendRequest(type: "r", key: "r1"), AppendRequest(type: "r", parentKeys: ["nobody"])], durability: nil)
        }
        for _ in 0..<2_000 where sequencer.queuedEventCount < 106 {
            try await Task.sleep(for: .milliseconds(5))
        }
        proceed.signal()
        await Task.detached { held.wait() }.value
        // Every batch staged while the first is still held.
        for _ in 0..<2_000 where staged.withLock({ $0 }) < 5 {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(staged.withLock { $0 } == 5 && node.applier.lastApplied == 0, "all five batches were staged on the held group")
        release.signal()
        #expect(try await first.value.results.map(\.id) == Array(1...100))
        let again = try await retry.value.results
        #expect(again.map(\.id) == Array(1...100) && again.allSatisfy(\.duplicate))
        let c = try await children.value.results
        #expect(c.map(\.id) == [101, 102, 102] && c.map(\.duplicate) == [false, false, true])
        await #expect(throws: LogError.self) { try await conflict.value }
        await #expect(throws: LogError.self) { try await rolledBack.value }
        let after = try await sequencer.submit([AppendRequest(type: "r", key: "r1")], durability: nil).results
        #expect(after == [AppendResult(id: 103, duplicate: false)], "the rolled-back key was free again")
        #expect(node.storage.families.keys[KeyBytes("c2")] == 102)
    }
}
