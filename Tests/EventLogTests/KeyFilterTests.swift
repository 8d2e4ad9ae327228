import Foundation
import Synchronization
import Testing
import TestSupport
@testable import EventLog

/// The sequencer's key filter may say "maybe" for a new key, never "no" for a known one: every
/// dedupe decision it shortcuts must be the one the `keys` family would give.
struct KeyFilterTests {
    static func randomKey(_ rng: inout SeededRandom) -> String {
        let length = Int.random(in: 1...40, using: &rng)
        return String((0..<length).map { _ in Character(UnicodeScalar(UInt8.random(in: 0x21...0x7E, using: &rng))) })
    }

    @Test func aKeyItWasGivenIsNeverNewAndFewNewKeysLookKnown() {
        let seed = SeededRandom.seed("KeyFilterTests.noFalseNegatives")
        var rng = SeededRandom(seed: seed)
        var filter = KeyFilter(expected: 1_000, bytesMax: 64 << 20)
        var inserted = Set<String>()
        // Past the first layer's capacity, so later keys land in larger layers.
        while inserted.count < 300_000 {
            let key = Self.randomKey(&rng) + "\(inserted.count)"
            inserted.insert(key)
            filter.insert(key)
        }
        #expect(filter.isEnabled)
        #expect(filter.bytes > 128 << 10, "grew past its first layer: \(filter.bytes) bytes")
        #expect(inserted.allSatisfy(filter.mayContain), "seed \(seed)")
        var falsePositives = 0
        for i in 0..<100_000 where filter.mayContain("new-\(i)-" + Self.randomKey(&rng)) { falsePositives += 1 }
        // About 1% per full layer; a filter that said "maybe" to everything would fail here.
        #expect(falsePositives < 3_000, "seed \(seed), key hash seed \(KeyFilter.seed) (BANYAN_KEY_HASH_SEED): \(falsePositives) of 100,000 new keys looked known")
    }

    @Test func pastItsBytesItGivesUpAndSaysMaybe() {
        var filter = KeyFilter(expected: 1_000, bytesMax: 200 << 10)
        #expect(filter.isEnabled)
        for i in 0..<60_000 { filter.insert("k\(i)") }
        #expect(filter.isEnabled && (0..<60_000).allSatisfy { filter.mayContain("k\($0)") })
        // The next layer (four times the first) does not fit: every answer is now "maybe".
        for i in 60_000..<200_000 { filter.insert("k\(i)") }
        #expect(!filter.isEnabled && filter.bytes == 0)
        #expect(filter.mayContain("absent") && filter.mayContain("k1"))
        #expect(!KeyFilter(expected: 1, bytesMax: 0).isEnabled)
        #expect(KeyFilter(expected: 1, bytesMax: 0).mayContain("anything"))
    }

    @Test func absorbingAnotherFilterHoldsBothKeySetsOrGivesUp() {
        var scanned = KeyFilter(expected: 10_000, bytesMax: 1 << 20)
        var live = KeyFilter(expected: 10_000, bytesMax: 1 << 20)
        for i in 0..<10_000 { scanned.insert("old\(i)") }
        for i in 0..<5_000 { live.insert("new\(i)") }
        live.absorb(scanned)
        #expect(live.isEnabled && live.count == 15_000)
        #expect((0..<10_000).allSatisfy { live.mayContain("old\($0)") } && (0..<5_000).allSatisfy { live.mayContain("new\($0)") })
        for i in 5_000..<6_000 { live.insert("new\(i)") }
        #expect((5_000..<6_000).allSatisfy { live.mayContain("new\($0)") })
        // Still a filter: an absorb that made every answer "maybe" would fail here.
        let falsePositives = (0..<20_000).filter { live.mayContain("absent\($0)") }.count
        #expect(falsePositives < 600, "key hash seed \(KeyFilter.seed) (BANYAN_KEY_HASH_SEED): \(falsePositives) of 20,000 absent keys looked known")
        var small = KeyFilter(expected: 10, bytesMax: 150 << 10)
        small.absorb(scanned)
        #expect(!small.isEnabled && small.mayContain("anything"), "two filters that do not fit together give up")
    }

    /// A new term's sequencer over a store that already holds keys (a restart or a promotion):
    /// while its scan is held (its view of storage taken, no key read), after it, and without a
    /// filter, retries are duplicates, parent keys resolve and new keys are new. Keys staged
    /// while the scan is held are not in its view of storage: after it they are found only
    /// through the layers the sequencer's own filter keeps when it absorbs the scan's.
    @Test(arguments: [64 << 20, 1 << 20, 0])
    func aSequencerOverStoredKeysDedupesTheSameWithTheFilter(bytesMax: Int) async throws {
        var limits = Limits()
        limits.keyFilterBytesMax = bytesMax
        let node = CommitGroupTests.Node(limits: limits, record: false)
        let first = node.sequencer(limits: limits)
        first.start()
        for batch in 0..<20 {
            _ = try await first.submit((0..<1_000).map { AppendRequest(type: "t", key: "k\(batch)-\($0)", payload: .int(Int64($0))) }, durability: nil)
        }
        first.close()
        let time = Atomic<Int64>(1_000_000)
        let second = Sequencer(
            applier: node.applier, limits: limits, now: { time.add(1, ordering: .relaxed).newValue }, observer: nil,
            lastID: node.applier.lastApplied, meta: node.applier.appliedMeta, segment: node.applier.segment, epoch: 2)
        let gate = DispatchSemaphore(value: 0)
        second.beforeKeyScan = { gate.wait() }
        second.start()
        defer { gate.signal() }  // a failed round must not leave the scan parked
        var results: [AppendResult] = []
        for round in 0..<2 {
            if round == 1 {
                // The scan is held: keys are looked up in storage, whatever the bound.
                #expect(node.storage.keyLookupCalls.withLock { $0.last } == true)
                if bytesMax > 0 { gate.signal() }
                second.waitForKeyScan()
            }
            // Retries of stored keys, one batch naming stored events as parents by key, then new keys.
            let retry = try await second.submit((0..<1_000).map { AppendRequest(type: "t", key: "k\(round * 7)-\($0)", payload: .int(Int64($0))) }, durability: nil)
            #expect(retry.results.enumerated().allSatisfy { $1.duplicate && $1.id == EventID(round * 7 * 1_000 + $0 + 1) })
            let conflict = try? await second.submit([AppendRequest(type: "t", key: "k3-5", payload: .int(6))], durability: nil)
            #expect(conflict == nil, "a stored key with other content is a conflict")
            results += try await second.submit(
                (0..<100).map { AppendRequest(type: "u", parentKeys: ["k19-\($0)"], key: "r\(round)-\($0)") }, durability: nil).results
            let missing = try? await second.submit([AppendRequest(type: "u", parentKeys: ["never-\(round)"])], durability: nil)
            #expect(missing == nil, "a parent key nobody wrote is not found")
        }
        #expect(results.allSatisfy { !$0.duplicate } && Set(results.map(\.id)).count == 200)
        #expect(
            node.storage.keyLookupCalls.withLock { $0.last } == (bytesMax == 0),
            "once the scan's filter is taken, keys are no longer looked up in storage")
        // r0-* were staged while the scan was held.
        let again = try await second.submit((0..<100).map { AppendRequest(type: "u", parentKeys: ["k19-\($0)"], key: "r0-\($0)") }, durability: nil)
        #expect(again.results.map(\.id) == Array(results.prefix(100)).map(\.id) && again.results.allSatisfy(\.duplicate))
        second.close()
        #expect(second.keysScanned == (bytesMax > 0), "the filter is in use once the scan is in, unless there is none")
        #expect(node.applier.lastApplied == 20_000 + 200)
    }

    /// The same through a RocksDB store reopened: the scan reads the `keys` family.
    @Test func aReopenedStoreFindsItsStoredKeysThroughTheFilter() async throws {
        let temp = try await TempStore.make()
        defer { try? FileManager.default.removeItem(atPath: temp.path) }
        for batch in 0..<5 {
            _ = try await temp.store.append((0..<1_000).map { AppendRequest(type: "t", key: "key-\(batch)-\($0)") })
        }
        temp.store.close()
        let store = try await temp.reopen()
        defer { store.close() }
        let sequencer = try #require(store.sequencer.withLock { $0 })
        sequencer.waitForKeyScan()
        _ = try await store.append([AppendRequest(type: "warm", key: "warm")])  // takes the scan's filter
        for batch in 0..<5 {
            let retry = try await store.append((0..<1_000).map { AppendRequest(type: "t", key: "key-\(batch)-\($0)") })
            #expect(retry.results.enumerated().allSatisfy { $1.duplicate && $1.id == EventID(batch * 1_000 + $0 + 1) }, "batch \(batch)")
        }
        let linked = try await store.append([AppendRequest(type: "u", parentKeys: ["key-4-999"], key: "fresh")])
        #expect(!linked.results[0].duplicate && linked.results[0].id == 5_002)
        #expect(try store.event(5_002)?.parents == [5_000])
        #expect(sequencer.keysScanned)
    }

    /// Keys are bytes: NFC "é" and NFD "e" + U+0301 are two keys, in one group as in storage.
    @Test func canonicallyEquivalentKeysAreDifferentKeys() async throws {
        let temp = try await TempStore.make()
        defer { temp.remove() }
        let nfc = "caf\u{E9}", nfd = "cafe\u{301}"
        #expect(nfc == nfd, "Swift calls them equal")
        let first = try await temp.store.append([
            AppendRequest(type: "a", key: nfc, payload: .int(1)), AppendRequest(type: "b", key: nfd, payload: .int(2)),
            AppendRequest(type: "c", parentKeys: [nfc]),
        ])
        #expect(first.results.map(\.duplicate) == [false, false, false] && first.results.map(\.id) == [1, 2, 3])
        #expect(try temp.store.event(3)?.parents == [1])
        let retry = try await temp.store.append([AppendRequest(type: "b", key: nfd, payload: .int(2)), AppendRequest(type: "a", key: nfc, payload: .int(1))])
        #expect(retry.results.map(\.id) == [2, 1] && retry.results.allSatisfy(\.duplicate))
        #expect(try temp.store.id(forKey: nfd) == 2 && temp.store.id(forKey: nfc) == 1)
    }

    /// The `keys` family's memtable filter through RocksDB: on from the open without a key
    /// filter, changed on a live store while the sequencer or an import looks keys up (RocksDB
    /// records its options in the newest OPTIONS file).
    @Test func theKeysMemtableFilterFollowsWhoLooksKeysUp() async throws {
        func keysRatio(_ path: String) throws -> Double? {
            let names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasPrefix("OPTIONS-") }
            let newest = try #require(names.max { Int($0.dropFirst(8)) ?? 0 < Int($1.dropFirst(8)) ?? 0 })
            let text = try String(contentsOfFile: path + "/" + newest, encoding: .utf8)
            let after = try #require(text.components(separatedBy: "[CFOptions \"keys\"]").dropFirst().first)
            let section = after.components(separatedBy: "\n[").first ?? after
            return section.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("memtable_prefix_bloom_size_ratio=") }
                .flatMap { Double($0.split(separator: "=")[1]) }
        }
        var limits = Limits()
        limits.keyFilterBytesMax = 0
        let t = try await TempStore.make(limits: limits)
        defer { t.remove() }
        _ = try await t.store.append([AppendRequest(type: "t", key: "a")])
        #expect(try keysRatio(t.path) == 0.1)
        t.store.close()
        let store = try await t.reopen()
        defer { store.close() }
        #expect(try keysRatio(t.path) == 0, "with a key filter the store opens without the memtable's")
        try store.storage.importLooksUpKeys(true)
        #expect(try keysRatio(t.path) == 0.1)
        try store.storage.sequencerLooksUpKeys(true)
        try store.storage.importLooksUpKeys(false)
        #expect(try keysRatio(t.path) == 0.1, "the sequencer still looks keys up")
        try store.storage.sequencerLooksUpKeys(false)
        #expect(try keysRatio(t.path) == 0)
    }
}
