import Foundation
import Synchronization
import Testing
import TestSupport
@testable import EventLog

/// Replication at the store level, on real RocksDB stores: shipping, promotion, fencing, and
/// truncating a divergent tail, each ending in byte-identical stores that verify clean.
struct ReplicationStoreTests {
    static func open(_ path: String, role: StoreRole, segmentEventsMax: Int = 40) async throws -> EventStore {
        var options = StoreOptions()
        options.durability = .never
        options.role = role
        options.limits.segmentEventsMax = segmentEventsMax
        return try await EventStore.open(at: path, options: options)
    }

    /// Every key and value of every column family, and the counters derived in memory.
    static func contents(_ store: EventStore) throws -> [String] {
        var lines: [String] = []
        for family in KeySpace.Family.allCases {
            let it = try store.storage.db.iterator(store.storage.cf(family))
            it.seekToFirst()
            while it.isValid {
                // This node's own watermark is not replicated (`EventStore.replicatedDigest`).
                if !(family == .meta && MetaKey.nodeLocal.contains(it.key)) { lines.append("\(family.name) \(it.key) \(it.value)") }
                it.next()
            }
            try it.checkStatus()
        }
        let stats = try store.stats()
        lines.append("stats \(stats.events) \(stats.edges) \(stats.roots) \(stats.heads) \(stats.epoch)")
        return lines
    }

    /// Ships every group `follower` lacks from `leader`; returns how many.
    @discardableResult
    static func ship(from leader: EventStore, to follower: EventStore, bytesMax: Int = 1 << 16) throws -> Int {
        var shipped = 0
        while true {
            let groups = try leader.shippableGroups(after: follower.lastID, bytesMax: bytesMax)
            if groups.isEmpty { return shipped }
            for group in groups { try follower.applyShipped(group) }
            shipped += groups.count
        }
    }

    static func appendRandom(_ store: EventStore, _ rng: inout SeededRandom, batches: Int, tag: String) async throws {
        for batch in 0..<batches {
            var requests = CommitGroupTests.randomBatch(&rng, lastID: store.lastID, batch: batch)
            for i in requests.indices {
                requests[i].key = requests[i].key.map { "\(tag)-\($0)" }
                requests[i].parentKeys = requests[i].parentKeys.map { "\(tag)-\($0)" }
                // New names in each phase, so truncation has dictionary entries to drop.
                requests[i].type += "-\(tag)"
            }
            _ = try await store.append(requests)
        }
    }

    static func expectClean(_ store: EventStore, _ seed: UInt64, _ what: String) throws {
        let report = try store.verify()
        #expect(report.problems.isEmpty, "seed \(seed): \(what): \(report.problems)")
    }

    @Test func aFollowerHoldsTheLeadersBytesAndRefusesAppends() async throws {
        let seed = SeededRandom.seed("ReplicationStoreTests.ship")
        var rng = SeededRandom(seed: seed)
        let (lp, fp) = (try TempDir.make("leader"), try TempDir.make("follower"))
        defer { for p in [lp, fp] { try? FileManager.default.removeItem(atPath: p) } }
        let leader = try await Self.open(lp, role: .leader)
        let follower = try await Self.open(fp, role: .follower)
        defer { leader.close(); follower.close() }
        #expect(follower.role == .follower && leader.role == .leader)
        try await Self.appendRandom(leader, &rng, batches: 60, tag: "a")
        #expect(try follower.replicatedDigest() != leader.replicatedDigest())
        #expect(try Self.ship(from: leader, to: follower, bytesMax: 4_096) > 10)
        #expect(try Self.contents(follower) == Self.contents(leader), "seed \(seed)")
        // The digest sees the same bytes, and not a node's own watermark.
        try follower.noteConfirmed(7)
        #expect(try follower.replicatedDigest() == leader.replicatedDigest())
        #expect(try follower.replicatedDigest().entries > 100)
        try Self.expectClean(follower, seed, "follower")
        await #expect(throws: LogError.self) { try await follower.append([AppendRequest(type: "x")]) }
        // A group that does not follow the last applied id changes nothing.
        let first = try leader.shippableGroups(after: 0, bytesMax: 1)
        #expect(throws: LogError.self) { try follower.applyShipped(first[0]) }
        var damaged = first[0]
        damaged[damaged.count / 2] ^= 0x40
        #expect(throws: LogError.self) { try follower.applyShipped(damaged) }
        #expect(try Self.contents(follower) == Self.contents(leader))
        // A leader applies nothing shipped.
        #expect(throws: LogError.self) { try leader.applyShipped(first[0]) }
    }

    /// A follower's fsync runs outside the shipping lock (the `Follower` service applies its next
    /// pull meanwhile): groups applied while it runs are not counted durable by it, and a
    /// truncation while it runs is not undone by it.
    @Test func aFollowersSyncCoversOnlyWhatWasAppliedBeforeItBegan() async throws {
        let seed = SeededRandom.seed("ReplicationStoreTests.sync")
        var rng = SeededRandom(seed: seed)
        let (lp, fp) = (try TempDir.make("leader"), try TempDir.make("follower"))
        defer { for p in [lp, fp] { try? FileManager.default.removeItem(atPath: p) } }
        /// Holds the first fsync after `armed` until `gate` is signalled.
        final class HeldSync: Sendable {
            let armed = Atomic(false)
            let entered = DispatchSemaphore(value: 0)
            let gate = DispatchSemaphore(value: 0)
            func hold() -> StorageError? {
                if armed.exchange(false, ordering: .acquiringAndReleasing) {
                    entered.signal()
                    gate.wait()
                }
                return nil
            }
        }
        let held = HeldSync()
        defer { held.gate.signal() }
        let leader = try await Self.open(lp, role: .leader)
        var options = StoreOptions()
        options.durability = .group
        options.role = .follower
        options.limits.segmentEventsMax = 40
        options.failSync = { held.hold() }
        let follower = try await EventStore.open(at: fp, options: options)
        defer { leader.close(); follower.close() }
        try await Self.appendRandom(leader, &rng, batches: 30, tag: "a")
        let groups = try leader.shippableGroups(after: 0, bytesMax: 1 << 20)
        try #require(groups.count == 31, "seed \(seed)")
        let half = groups.count / 2

        /// Starts `syncShipped` on a thread of its own, holds its fsync and runs `meanwhile` on
        /// another, then lets the fsync finish. `meanwhile` must finish while the fsync is held
        /// (a bounded wait: one that waits for the sync fails instead of hanging the test), or,
        /// with `waitsForSync`, must not have finished 300 ms into the hold.
        func syncHeld(waitsForSync: Bool = false, _ meanwhile: @escaping @Sendable () throws -> Void) async throws {
            let synced = Atomic(false)
            let ran = Mutex<Result<Void, any Error>?>(nil)
            held.armed.store(true, ordering: .releasing)
            Thread {
                follower.syncShipped()
                synced.store(true, ordering: .releasing)
            }.start()
            try await waitUntil("the fsync is held") { held.entered.wait(timeout: .now()) == .success }
            Thread {
                let result = Result { try meanwhile() }
                ran.withLock { $0 = result }
            }.start()
            if waitsForSync {
                try await Task.sleep(for: .milliseconds(300))
                let ranEarly = ran.withLock { $0 != nil }
                #expect(!ranEarly, "seed \(seed): returned while a follower's fsync was under way")
            } else {
                try await waitUntil("the work beside the held fsync is done", within: .seconds(10)) { ran.withLock { $0 != nil } }
            }
            held.gate.signal()
            try await waitUntil("the sync and the work beside it have returned") { synced.load(ordering: .acquiring) && ran.withLock { $0 != nil } }
            try ran.withLock { $0 }?.get()
        }

        for group in groups[..<half] { try follower.applyShipped(group) }
        let through = follower.lastID
        #expect(follower.durableID < through)
        try await syncHeld {
            // Applied while the fsync runs (it would wait for the sync if the sync held the lock).
            for group in groups[half...] { try follower.applyShipped(group) }
        }
        #expect(follower.lastID == leader.lastID)
        #expect(follower.durableID == through, "seed \(seed): the sync begun at \(through) claimed \(follower.durableID)")
        follower.syncShipped()
        #expect(follower.durableID == follower.lastID)

        // A truncation while an fsync of a longer log runs: the store stays at the cut.
        try await Self.appendRandom(leader, &rng, batches: 5, tag: "b")
        try Self.ship(from: leader, to: follower)
        let cut = through
        try await syncHeld { try follower.truncate(after: cut) }
        #expect(follower.lastID == cut)
        #expect(follower.durableID == cut, "seed \(seed): a sync begun before the truncation moved the durable id to \(follower.durableID)")
        try Self.expectClean(follower, seed, "follower after the truncation")

        // close() waits for an fsync under way, and no sync begins after it.
        try Self.ship(from: leader, to: follower)
        try await syncHeld(waitsForSync: true) { follower.close() }
        held.armed.store(true, ordering: .releasing)
        follower.syncShipped()
        #expect(held.entered.wait(timeout: .now()) == .timedOut, "a sync began on a closed store")
    }

    /// A commit that blocks on the writer thread until `release()`: it holds a fenced
    /// sequencer's close open for as long as a test wants.
    final class HeldCommit: StoreObserver {
        let entered = DispatchSemaphore(value: 0)
        let gate = DispatchSemaphore(value: 0)
        /// Off while the store opens: opening a new store commits its first event.
        let armed = Atomic(false)
        func didCommit(events: Int, batches: Int, synced: Bool, writeDuration: Duration) {
            guard armed.load(ordering: .acquiring) else { return }
            entered.signal()
            gate.wait()
        }
        func release() { for _ in 0..<8 { gate.signal() } }
    }

    /// A follower whose fsyncs keep failing refuses shipped groups past
    /// `Applier.syncFailuresMax` (nothing applied), and takes them again once the disk syncs:
    /// the retried apply tries the sync itself, since nothing else would.
    @Test func aFollowerRefusedForFailedSyncsResumesOnceTheDiskSyncs() async throws {
        let seed = SeededRandom.seed("ReplicationStoreTests.syncRefusal")
        var rng = SeededRandom(seed: seed)
        let (lp, fp) = (try TempDir.make("leader"), try TempDir.make("follower"))
        defer { for p in [lp, fp] { try? FileManager.default.removeItem(atPath: p) } }
        let failing = Atomic(true)
        let failures = Atomic(0)
        let leader = try await Self.open(lp, role: .leader)
        var options = StoreOptions()
        options.durability = .group
        options.role = .follower
        options.limits.segmentEventsMax = 40
        options.failSync = {
            guard failing.load(ordering: .relaxed) else { return nil }
            failures.add(1, ordering: .relaxed)
            return StorageError(.io, "injected fsync failure")
        }
        let follower = try await EventStore.open(at: fp, options: options)
        defer { leader.close(); follower.close() }
        try await Self.appendRandom(leader, &rng, batches: 8, tag: "a")
        let groups = try leader.shippableGroups(after: 0, bytesMax: 1 << 20)
        try #require(groups.count == 9, "seed \(seed)")
        // Each failed sync follows an applied pull, as in the `Follower` service.
        var next = 0
        while failures.load(ordering: .relaxed) < Applier.syncFailuresMax {
            try follower.applyShipped(groups[next])
            next += 1
            follower.syncShipped()
        }
        #expect(follower.durableID == 0, "seed \(seed)")
        let before = try Self.contents(follower)
        for _ in 0..<2 {
            let refusal = #expect(throws: LogError.self, "seed \(seed): refused while the WAL cannot be synced") { try follower.applyShipped(groups[next]) }
            #expect(refusal?.code == .storage && refusal?.message.contains("could not be synced") == true, "\(String(describing: refusal))")
        }
        #expect(try Self.contents(follower) == before)
        #expect(failures.load(ordering: .relaxed) == Applier.syncFailuresMax + 2, "each refused apply tried a sync")
        failing.store(false, ordering: .relaxed)
        try follower.applyShipped(groups[next])
        // The sync tried first covers what was applied before this group, not the group.
        #expect(follower.durableID == CommitGroup.lastID(encoded: groups[next - 1]), "seed \(seed)")
        for group in groups[(next + 1)...] { try follower.applyShipped(group) }
        follower.syncShipped()
        #expect(follower.durableID == leader.lastID, "seed \(seed)")
        #expect(try Self.contents(follower) == Self.contents(leader), "seed \(seed)")
        try Self.expectClean(follower, seed, "follower after the disk synced again")
    }

    /// `close()` racing a fence: the fenced sequencer is out of the slot while its writer thread
    /// is still in a commit, and the store must not close RocksDB until that thread is done.
    /// Every wait polls with a bound (no cooperative thread is blocked, a regression fails
    /// instead of hanging).
    @Test func closeWaitsForASequencerBeingFenced() async throws {
        for stepDown in [false, true] {
            let path = try TempDir.make("fence-close")
            defer { try? FileManager.default.removeItem(atPath: path) }
            let held = HeldCommit()
            defer { held.release() }
            var options = StoreOptions()
            options.durability = .never
            options.role = .leader
            options.observer = held
            let store = try await EventStore.open(at: path, options: options)
            held.armed.store(true, ordering: .releasing)
            let append = Task { try? await store.append([AppendRequest(type: "t")]) }
            try await waitUntil("the writer thread is inside its commit") { held.entered.wait(timeout: .now()) == .success }
            let fenced = Mutex(false)
            let closed = Mutex(false)
            Thread {
                _ = stepDown ? store.stepDown() : store.fence(by: store.epoch + 1)
                fenced.withLock { $0 = true }
            }.start()
            // The slot is empty: the fence waits in the sequencer's close.
            try await waitUntil("the fence has emptied the slot") { store.role != .leader }
            Thread {
                store.close()
                closed.withLock { $0 = true }
            }.start()
            try await Task.sleep(for: .milliseconds(300))
            #expect(!closed.withLock { $0 }, "close() returned while the fenced sequencer's commit was running (stepDown: \(stepDown))")
            #expect(!fenced.withLock { $0 })
            held.release()
            _ = await append.value
            try await waitUntil("the fence and the close have returned") { closed.withLock { $0 } && fenced.withLock { $0 } }
        }
    }

    /// The whole failover story on stores: A leads; B follows part of the way; A writes a tail B
    /// never gets; B is promoted (epoch 2) and writes; A learns of epoch 2 and is fenced; A
    /// reopens as B's follower, finds where it diverges, drops its tail and catches up.
    @Test func promotionFencingAndTruncationEndInTheSameStore() async throws {
        let seed = SeededRandom.seed("ReplicationStoreTests.failover")
        var rng = SeededRandom(seed: seed)
        let (ap, bp, cp) = (try TempDir.make("a"), try TempDir.make("b"), try TempDir.make("c"))
        defer { for p in [ap, bp, cp] { try? FileManager.default.removeItem(atPath: p) } }
        var a = try await Self.open(ap, role: .leader)
        let b = try await Self.open(bp, role: .follower)
        let c = try await Self.open(cp, role: .follower)
        defer { b.close(); c.close() }

        try await Self.appendRandom(a, &rng, batches: 30, tag: "one")
        try Self.ship(from: a, to: b)
        let shared = b.lastID
        try await Self.appendRandom(a, &rng, batches: 20, tag: "lost")  // never reaches B
        try Self.ship(from: a, to: c)  // C has all of A's, more than B
        let aLast = a.lastID
        #expect(aLast > shared)

        let epoch = try await b.promote(leader: "http://b")
        #expect(epoch == 2 && b.role == .leader && b.epoch == 2)
        let control = try #require(try b.event(shared + 1))
        #expect(control.type == EventStore.epochEventType && control.epoch == 2)
        await #expect(throws: LogError.self) { try await b.promote(leader: "http://b") }
        try await Self.appendRandom(b, &rng, batches: 15, tag: "two")

        // A learns of epoch 2: no more writes there.
        #expect(!a.fence(by: 1))
        #expect(a.fence(by: epoch))
        #expect(a.role == .fenced)
        do {
            _ = try await a.append([AppendRequest(type: "late")])
            Issue.record("a fenced leader took a write")
        } catch let error as LogError {
            #expect(error.code == .notLeader)
        }
        await #expect(throws: LogError.self) { try await a.promote(leader: "http://a") }
        a.close()
        a = try await Self.open(ap, role: .follower)
        defer { a.close() }

        // Divergence, Kafka style: ask the leader where our latest epoch ends there.
        for node in [a, c] {
            let cut = try #require(node.divergence(leaderEnd: b.epochEnd(for: node.epoch)), "seed \(seed)")
            #expect(cut == shared)
            #expect(try node.truncate(after: cut) == Int(aLast - shared))
            #expect(node.lastID == shared)
            try Self.expectClean(node, seed, "after truncation")
            #expect(node.divergence(leaderEnd: b.epochEnd(for: node.epoch)) == nil)
            try Self.ship(from: b, to: node)
            #expect(try Self.contents(node) == Self.contents(b), "seed \(seed)")
            try Self.expectClean(node, seed, "after catching up")
        }
        #expect(a.epochHistory.map(\.epoch) == [1, 2] && a.epochHistory.last?.firstID == shared + 1)
        #expect(throws: LogError.self) { try b.truncate(after: 0) }
    }

    /// Two followers promoted to the same epoch (an operator's mistake without consensus): by
    /// numbers alone the rejoining one would keep its own epoch-2 events. The epoch's first
    /// record tells the two apart.
    @Test func anEpochPromotedTwiceIsToldApartByHowItBegan() async throws {
        let seed = SeededRandom.seed("ReplicationStoreTests.twice")
        var rng = SeededRandom(seed: seed)
        let (ap, bp, cp) = (try TempDir.make("a"), try TempDir.make("b"), try TempDir.make("c"))
        defer { for p in [ap, bp, cp] { try? FileManager.default.removeItem(atPath: p) } }
        let a = try await Self.open(ap, role: .leader)
        let b = try await Self.open(bp, role: .follower)
        let c = try await Self.open(cp, role: .follower)
        defer { a.close(); b.close(); c.close() }
        try await Self.appendRandom(a, &rng, batches: 20, tag: "one")
        try Self.ship(from: a, to: b)
        try Self.ship(from: a, to: c)
        let shared = b.lastID
        #expect(try await b.promote(leader: "http://b") == 2)
        try await Self.appendRandom(b, &rng, batches: 5, tag: "b")
        #expect(try await c.promote(leader: "http://c") == 2)
        try await Self.appendRandom(c, &rng, batches: 9, tag: "c")
        // The case under test needs C's epoch 2 to end past B's (batch sizes are random).
        var more = 0
        while c.lastID <= b.lastID, more < 50 {
            try await Self.appendRandom(c, &rng, batches: 1, tag: "c\(more)")
            more += 1
        }
        #expect(c.lastID > b.lastID, "seed \(seed)")
        // B rejoins C. Kafka's rule alone keeps all of B's log: "epoch 2 ends at C's last id".
        #expect(b.fence(by: 3))
        b.close()
        let rejoined = try await Self.open(bp, role: .follower)
        defer { rejoined.close() }
        #expect(rejoined.divergence(leaderEnd: c.epochEnd(for: rejoined.epoch)) == nil)
        let start = try #require(try c.epochStart(2))
        #expect(start.firstID == shared + 1)
        let cut = try #require(try rejoined.conflictingEpoch((2, start.firstID, start.crc)), "seed \(seed)")
        #expect(cut == shared)
        _ = try rejoined.truncate(after: cut)
        #expect(try rejoined.conflictingEpoch((2, start.firstID, start.crc)) == nil)
        #expect(rejoined.divergence(leaderEnd: c.epochEnd(for: rejoined.epoch)) == nil)
        try Self.ship(from: c, to: rejoined)
        #expect(try Self.contents(rejoined) == Self.contents(c), "seed \(seed)")
        try Self.expectClean(rejoined, seed, "after rejoining")
        // The same epoch begun the same way is no conflict.
        #expect(try c.conflictingEpoch((2, start.firstID, start.crc)) == nil)
        #expect(try c.conflictingEpoch((1, 1, try #require(try a.epochStart(1)).crc)) == nil)
    }

    /// A follower that knows writes up to W were confirmed by a replica, and lacks some of them,
    /// is not promoted unless the loss is accepted; a promoted node's watermark covers its log.
    @Test func promotionRefusesToLoseConfirmedWrites() async throws {
        let seed = SeededRandom.seed("ReplicationStoreTests.confirmed")
        var rng = SeededRandom(seed: seed)
        let (ap, bp) = (try TempDir.make("a"), try TempDir.make("b"))
        defer { for p in [ap, bp] { try? FileManager.default.removeItem(atPath: p) } }
        let a = try await Self.open(ap, role: .leader)
        var b = try await Self.open(bp, role: .follower)
        defer { a.close() }
        try await Self.appendRandom(a, &rng, batches: 10, tag: "x")
        try Self.ship(from: a, to: b)
        try b.noteConfirmed(b.lastID + 3)  // the leader said a replica holds 3 more
        // It survives a restart (kept in meta).
        b.close()
        b = try await Self.open(bp, role: .follower)
        defer { b.close() }
        #expect(b.confirmedID == b.lastID + 3)
        let before = b.lastID
        do {
            _ = try await b.promote(leader: "http://b")
            Issue.record("promoted a node lacking confirmed writes")
        } catch let error as LogError {
            #expect(error.code == .conflict && error.message.contains("would lose"))
        }
        #expect(b.role == .follower && b.lastID == before)
        #expect(try await b.promote(leader: "http://b", allowingLoss: true) == 2)
        // The writes given up are gone from this lineage: the watermark is the new leader's log.
        #expect(b.confirmedID == b.lastID && b.lastID == before + 1)
    }

    /// Cluster mode's transitions: a leader that lost its lease steps down to a follower at once
    /// (no write acknowledged after), and a fenced node rejoins as a follower; both can be
    /// promoted again later, each time to a new epoch.
    @Test func aLeaderStepsDownAndAFencedNodeRejoinsAsFollowers() async throws {
        let seed = SeededRandom.seed("ReplicationStoreTests.stepDown")
        var rng = SeededRandom(seed: seed)
        let path = try TempDir.make("a")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let a = try await Self.open(path, role: .leader)
        defer { a.close() }
        try await Self.appendRandom(a, &rng, batches: 3, tag: "x")
        #expect(a.stepDown())
        #expect(a.role == .follower)
        #expect(!a.stepDown(), "a follower has nothing to step down from")
        await #expect(throws: LogError.self) { try await a.append([AppendRequest(type: "late")]) }
        #expect(try await a.promote(leader: "http://a") == 2)
        #expect(a.role == .leader)
        #expect(a.fence(by: 3) && a.role == .fenced)
        await #expect(throws: LogError.self) { try await a.promote(leader: "http://a") }
        a.rejoin()
        #expect(a.role == .follower)
        #expect(try await a.promote(leader: "http://a", epochAtLeast: 3) == 4)
        let last = try await a.append([AppendRequest(type: "after")]).results[0].id
        #expect(last == a.lastID)
    }

    @Test func epochEndsFollowKafkasRule() {
        let history: [(epoch: UInt64, firstID: EventID)] = [(1, 1), (3, 101), (4, 101), (6, 250)]
        #expect(EventStore.epochEnd(for: 1, history: history, lastID: 300) == (1, 100))
        #expect(EventStore.epochEnd(for: 2, history: history, lastID: 300) == (1, 100))
        #expect(EventStore.epochEnd(for: 3, history: history, lastID: 300) == (3, 100))
        #expect(EventStore.epochEnd(for: 5, history: history, lastID: 300) == (4, 249))
        #expect(EventStore.epochEnd(for: 9, history: history, lastID: 300) == (6, 300))
        #expect(EventStore.epochEnd(for: 0, history: history, lastID: 300) == (0, 0))
        // A follower in epoch 1 up to 180 against that leader: keep 1...100.
        #expect(EventStore.divergence(history: [(1, 1)], lastID: 180, leaderEnd: (1, 100)) == 100)
        // A follower ahead of the leader within the leader's current epoch is not cut by epochs.
        #expect(EventStore.divergence(history: [(1, 1), (6, 250)], lastID: 260, leaderEnd: (6, 300)) == nil)
        // A follower that never had the leader's epoch 5 (its own 6 began at 250, unknown to the
        // leader): nothing past its end of epoch 1 is trusted; it asks again about epoch 1.
        #expect(EventStore.divergence(history: [(1, 1), (6, 250)], lastID: 260, leaderEnd: (5, 270)) == 249)
        #expect(EventStore.divergence(history: [(1, 1), (6, 250)], lastID: 249, leaderEnd: (1, 300)) == nil)
        // From the simulator (seed 1): this log has epochs 5, 6 (a leader cut off from the
        // rest) and 8; the leader's history has 5, 7 and 9. Asked about 8, the leader answers
        // "7 ends at 508". This log never had epoch 7, so its epoch-6 events 495...508 are not
        // the leader's: keep only up to the end of 6 for now (then ask about 6: "5 ends at 494").
        #expect(EventStore.divergence(history: [(1, 1), (5, 400), (6, 495), (8, 578)], lastID: 631, leaderEnd: (7, 508)) == 577)
        #expect(EventStore.divergence(history: [(1, 1), (5, 400), (6, 495)], lastID: 577, leaderEnd: (5, 494)) == 494)
        // Behind the leader in the same epoch: nothing to drop.
        #expect(EventStore.divergence(history: [(1, 1)], lastID: 50, leaderEnd: (1, 100)) == nil)
    }
}
