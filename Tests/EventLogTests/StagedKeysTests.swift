import Foundation
import Synchronization
import Testing
import TestSupport
@testable import EventLog

/// The staged-key tables answer as a map from key bytes to id would, whatever the hashes; and the
/// sequencer finds keys of its own group and of groups handed on but not yet written through them.
struct StagedKeysTests {
    /// Random inserts, lookups and newest-first removals against a dictionary. The hashes are
    /// drawn from a handful of values, so most keys collide and probe chains are long; their
    /// probe starts are spread over the range, near its end too, so runs wrap around and land
    /// elsewhere when the table grows, which it does (`expected` is too small).
    @Test func itAnswersAsAMapWouldWithCollidingHashesAndGrowth() {
        let seed = SeededRandom.seed("StagedKeysTests.model")
        var rng = SeededRandom(seed: seed)
        let starts: [UInt64] = [0, 1, 0x1234_5678, 0x7FFF_FFFF, 0xFFFF_FF80, 0xFFFF_FFC1, 0xFFFF_FFFE, 0xFFFF_FFFF]
        func drawHash(_ key: String) -> UInt64 { starts.randomElement(using: &rng)! << 32 | UInt64(key.utf8.count) }
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
                let hash = drawHash(key)
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
                let hash = hashOf[KeyBytes(key)] ?? drawHash(key)
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
    /// keys staged earlier in their own group; a batch rolled back leaves its keys free in the
    /// same group. Every wait is bounded, so a regression fails instead of hanging.
    @Test func groupsStagedOnAnUnwrittenGroupFindItsKeys() async throws {
        print("StagedKeysTests: key hash seed \(KeyFilter.seed) (set BANYAN_KEY_HASH_SEED=\(KeyFilter.seed) to replay)")
        let bound = DispatchTime.now() + 30
        let node = CommitGroupTests.Node(record: false)
        let held = Atomic(false), release = DispatchSemaphore(value: 0)
        node.storage.beforeWrite = { group in
            if group.first == 1 {
                held.store(true, ordering: .releasing)
                _ = release.wait(timeout: bound)
            }
        }
        let sequencer = node.sequencer(limits: Limits())
        // The stager waits after the first group until the other batches are queued, so it hands
        // that group to the committer instead of writing it itself (which it does when idle).
        let staged = Mutex(0)
        let stagerHeld = Atomic(false), proceed = DispatchSemaphore(value: 0)
        sequencer.afterStaging = { batches in
            if staged.withLock({ $0 += batches; return $0 }) == 1 {
                stagerHeld.store(true, ordering: .releasing)
                _ = proceed.wait(timeout: bound)
            }
        }
        sequencer.start()
        defer {
            proceed.signal()
            release.signal()
            sequencer.close()
        }
        let first = Task { try await sequencer.submit((0..<100).map { AppendRequest(type: "t", key: "a\($0)", payload: .int(Int64($0))) }, durability: nil) }
        try await waitUntil("the first group is staged") { stagerHeld.load(ordering: .acquiring) }
        // One submit: the batches are queued in this order, and staged in one group.
        let receipts = Mutex<[Int: Result<AppendReceipt, any Error>]>([:])
        let batches: [[AppendRequest]] = [
            (0..<100).map { AppendRequest(type: "t", key: "a\($0)", payload: .int(Int64($0))) },
            [AppendRequest(type: "c", parentKeys: ["a7", "a3"], key: "c1"), AppendRequest(type: "c", parentKeys: ["c1"], key: "c2"),
             AppendRequest(type: "c", parentKeys: ["c1"], key: "c2")],
            [AppendRequest(type: "t", key: "a5", payload: .int(6))],
            [AppendRequest(type: "r", key: "r1"), AppendRequest(type: "r", parentKeys: ["nobody"])],
            [AppendRequest(type: "r", parentKeys: ["r1"])],
            [AppendRequest(type: "r", key: "r1")],
        ]
        sequencer.submit(batches.enumerated().map { i, requests in
            AppendBatch(requests) { result in receipts.withLock { $0[i] = result } }
        }, durability: nil)
        try await waitUntil("the batches are queued") { sequencer.queuedEventCount == batches.reduce(0) { $0 + $1.count } }
        proceed.signal()
        try await waitUntil("the first group's write is held") { held.load(ordering: .acquiring) }
        try await waitUntil("the other batches are staged") { staged.withLock { $0 } == 1 + batches.count }
        #expect(node.applier.lastApplied == 0, "all were staged on the held group")
        release.signal()
        #expect(try await first.value.results.map(\.id) == Array(1...100))
        try await waitUntil("every batch is answered") { receipts.withLock { $0.count } == batches.count }
        let results = receipts.withLock { $0 }
        let retry = try results[0]!.get().results
        #expect(retry.map(\.id) == Array(1...100) && retry.allSatisfy(\.duplicate))
        let c = try results[1]!.get().results
        #expect(c.map(\.id) == [101, 102, 102] && c.map(\.duplicate) == [false, false, true])
        #expect((try? results[2]!.get()) == nil, "other content under a5 is a conflict")
        #expect((try? results[3]!.get()) == nil, "a parent key nobody wrote fails its batch")
        #expect((try? results[4]!.get()) == nil, "r1 was rolled back: no parent by that key")
        #expect(try results[5]!.get().results == [AppendResult(id: 103, duplicate: false)], "r1 is free again")
        #expect(node.storage.families.keys[KeyBytes("c2")] == 102 && node.storage.families.keys[KeyBytes("r1")] == 103)
    }
}

/// A group's keys go to RocksDB in the `keys` family's byte order, whatever order they were
/// staged in, and each key with its own id.
struct KeyOrderTests {
    /// 40 hex digits in no order, like a commit SHA.
    static func hexKey(_ rng: inout SeededRandom) -> String {
        String((0..<40).map { _ in "0123456789abcdef".randomElement(using: &rng)! })
    }

    @Test func keysAreWrittenInByteOrderWithTheirIds() throws {
        let seed = SeededRandom.seed("KeyOrderTests.byteOrder")
        var rng = SeededRandom(seed: seed)
        // Prefixes, bytes above 0x7F (NFC "é" is C3 A9, NFD "e" + U+0301 is 65 CC 81), hex.
        var keys = ["b", "ba", "a", "caf\u{E9}", "cafe\u{301}", "", "zz", "\u{10FFFF}"]
        keys += (0..<500).map { _ in Self.hexKey(&rng) }
        var group = CommitGroup(epoch: 1, after: 0, meta: .fresh)
        for (i, key) in keys.enumerated() { group.keys.append((key, EventID(i + 1))) }
        let order = group.keyOrder()
        #expect(order.sorted() == Array(keys.indices), "seed \(seed): every key once")
        let written = order.map { Array(group.keys[$0].key.utf8) }
        #expect(zip(written, written.dropFirst()).allSatisfy { $0.lexicographicallyPrecedes($1) }, "seed \(seed): bytewise ascending")
        #expect(KeyBytes("cafe\u{301}") < KeyBytes("caf\u{E9}") && !(KeyBytes("caf\u{E9}") < KeyBytes("cafe\u{301}")))
        #expect(KeyBytes("b") < KeyBytes("ba") && !(KeyBytes("ba") < KeyBytes("b")) && !(KeyBytes("b") < KeyBytes("b")))
        var ascending = CommitGroup(epoch: 1, after: 0, meta: .fresh)
        for i in 0..<100 { ascending.keys.append(("e\(String(format: "%05d", i))", EventID(i + 1))) }
        #expect(ascending.keyOrder() == Array(0..<100))
    }

    /// Through RocksDB: one batch of keys in no order, each found under its own id.
    @Test func keysInNoOrderAreStoredUnderTheirIds() async throws {
        let seed = SeededRandom.seed("KeyOrderTests.rocksdb")
        var rng = SeededRandom(seed: seed)
        let t = try await TempStore.make()
        defer { t.remove() }
        let keys = (0..<300).map { i in "\(Self.hexKey(&rng))-\(i)" }
        let receipt = try await t.store.append(keys.map { AppendRequest(type: "k", key: $0) })
        #expect(receipt.results.map(\.id) == Array(1...300))
        for (i, key) in keys.enumerated() {
            #expect(try t.store.id(forKey: key) == EventID(i + 1), "seed \(seed): \(key)")
        }
        #expect(try t.store.verify().ok)
    }
}
