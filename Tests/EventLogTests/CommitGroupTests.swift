import Foundation
import Synchronization
import Testing
import TestSupport
@testable import EventLog

/// A commit group is what one commit writes, and it can be shipped as bytes and applied
/// elsewhere with the same result, byte for byte.
struct CommitGroupTests {
    /// A leader (sequencer + applier) on in-memory storage, recording every group it applies.
    final class Node: Sendable {
        let storage: MemoryCommitStorage
        let index: LogIndex
        let applier: Applier
        let groups: Recorded

        final class Recorded: Sendable {
            let all = Mutex<[CommitGroup]>([])
        }

        init(limits: Limits = Limits(), record: Bool = true) {
            let storage = MemoryCommitStorage(), index = LogIndex(), groups = Recorded()
            self.storage = storage
            self.index = index
            self.groups = groups
            var tap: (@Sendable (CommitGroup) -> Void)?
            if record {
                tap = { group in groups.all.withLock { $0.append(group) } }
            }
            applier = Applier(
                storage: storage, index: index, lastID: 0, meta: StoreMeta.fresh, segment: OpenSegment(first: 1), policy: .never,
                syncInterval: .seconds(1), observer: nil, logger: nil, onApplied: tap)
        }

        func sequencer(limits: Limits) -> Sequencer {
            let time = Atomic<Int64>(1_000)
            return Sequencer(
                applier: applier, limits: limits, now: { time.add(1, ordering: .relaxed).newValue }, observer: nil,
                lastID: 0, meta: .fresh, segment: OpenSegment(first: 1), epoch: 1)
        }
    }

    static func randomBatch(_ rng: inout SeededRandom, lastID: EventID, batch: Int) -> [AppendRequest] {
        (0..<Int.random(in: 1...20, using: &rng)).map { i in
            let parents = lastID == 0 ? [] : (0..<Int.random(in: 0...3, using: &rng)).map { _ in EventID.random(in: 1...lastID, using: &rng) }
            return AppendRequest(
                type: "t\(Int.random(in: 0..<8, using: &rng))", parents: parents,
                parentKeys: batch > 0 && Bool.random(using: &rng) ? ["k\(batch - 1)-0"] : [],
                key: i == 0 || Bool.random(using: &rng) ? "k\(batch)-\(i)" : nil,
                stream: Bool.random(using: &rng) ? "s\(Int.random(in: 0..<5, using: &rng))" : nil,
                message: Bool.random(using: &rng) ? "m\(i)" : nil,
                payload: Bool.random(using: &rng) ? .int(Int.random(in: 0..<1_000, using: &rng)) : nil)
        }
    }

    @Test func aFollowerAppliesTheShippedBytesToTheSameStore() async throws {
        let seed = SeededRandom.seed("CommitGroupTests.ship")
        var rng = SeededRandom(seed: seed)
        var limits = Limits()
        limits.segmentEventsMax = 37  // seals in many groups
        let leader = Node(limits: limits)
        let sequencer = leader.sequencer(limits: limits)
        sequencer.start()
        for batch in 0..<200 {
            // Sequential, so every batch stages on top of the last and succeeds.
            _ = try await sequencer.submit(Self.randomBatch(&rng, lastID: leader.applier.lastApplied, batch: batch), durability: nil)
        }
        sequencer.close()
        let shipped = leader.groups.all.withLock { $0 }
        #expect(shipped.count > 10)
        #expect(shipped.allSatisfy { CommitGroup.lastID(encoded: $0.encoded()) == $0.last })
        #expect(CommitGroup.lastID(encoded: Array(shipped[0].encoded().prefix(20))) == nil)
        #expect(shipped.contains { !$0.seals.isEmpty } && shipped.contains { !$0.names.isEmpty } && shipped.contains { !$0.keys.isEmpty })

        let follower = Node(record: false)
        for group in shipped {
            let bytes = group.encoded()
            let received = try CommitGroup.decode(bytes)
            #expect(received == group, "seed \(seed)")
            #expect(received.encoded() == bytes)
            try follower.applier.apply(received, wantsSync: false)
        }
        #expect(follower.storage.families == leader.storage.families, "seed \(seed): the follower's store differs from the leader's")
        #expect(follower.applier.lastApplied == leader.applier.lastApplied)
        #expect(follower.applier.segment == leader.applier.segment)
        #expect(follower.applier.appliedMeta == leader.applier.appliedMeta)
        #expect(follower.index.lastID == leader.index.lastID && follower.index.edgeCount == leader.index.edgeCount)
    }

    @Test func aDamagedOrMisplacedGroupIsRefusedAndChangesNothing() async throws {
        let leader = Node()
        let sequencer = leader.sequencer(limits: Limits())
        sequencer.start()
        for i in 0..<3 {
            _ = try await sequencer.submit([AppendRequest(type: "a", parents: i == 0 ? [] : [1], key: "k\(i)", stream: "s")], durability: nil)
        }
        sequencer.close()
        let groups = leader.groups.all.withLock { $0 }
        let bytes = groups[0].encoded()
        for i in bytes.indices {
            var damaged = bytes
            damaged[i] ^= 0x20
            #expect(throws: StorageError.self, "byte \(i)") { _ = try CommitGroup.decode(damaged) }
        }
        #expect(throws: StorageError.self) { _ = try CommitGroup.decode(Array(bytes.dropLast())) }

        let follower = Node(record: false)
        let before = follower.storage.families
        // Not the next group.
        #expect(throws: LogError.self) { try follower.applier.apply(groups[1], wantsSync: false) }
        try follower.applier.apply(groups[0], wantsSync: false)
        // An older epoch than the store's.
        var stale = groups[1]
        stale.epoch = 0
        #expect(throws: LogError.self) { try follower.applier.apply(stale, wantsSync: false) }
        // A seal that does not match the records.
        var sealed = groups[1]
        sealed.seals = [SegmentEntry(first: 1, last: 2, firstTimeUnixNano: 0, lastTimeUnixNano: 0, bytes: 1, checksum: 1)]
        #expect(throws: LogError.self) { try follower.applier.apply(sealed, wantsSync: false) }
        #expect(follower.applier.lastApplied == 1)
        #expect(before != follower.storage.families)
        try follower.applier.apply(groups[1], wantsSync: false)
        try follower.applier.apply(groups[2], wantsSync: false)
        #expect(follower.storage.families == leader.storage.families)
    }

    @Test func theWireFormIsItsDocumentedLayout() throws {
        let event = FormatGoldenTests.event
        var group = CommitGroup(epoch: 1, after: 4, meta: StoreMeta(epochHistory: [(1, 1)], edges: 7, nextTypeID: 3, nextStreamID: 2))
        let record = RecordCodec.encode(event)
        record.withUnsafeBytes { group.append(record: $0, entry: IndexBlock.Entry(type: 2, stream: 0, parents: [3, 4])) }
        group.keys = [("k", 5)]
        group.names = [CommitGroup.Name(kind: .type, name: "t", id: 2)]
        let index = IndexBlock(first: 5, entries: [IndexBlock.Entry(type: 2, stream: 0, parents: [3, 4])]).encoded()
        let body: [UInt8] = [1] + FormatGoldenTests.be64(1) + FormatGoldenTests.be64(5) + FormatGoldenTests.be32(1)
            + FormatGoldenTests.varint(UInt64(record.count)) + record
            + [1, 0] + FormatGoldenTests.bytes("k")
            + [1, 1] + FormatGoldenTests.be32(2) + FormatGoldenTests.bytes("t")
            + [0]
            + FormatGoldenTests.be64(7) + FormatGoldenTests.be32(3) + FormatGoldenTests.be32(2)
            + FormatGoldenTests.varint(UInt64(index.count)) + index
        let expected = body + FormatGoldenTests.be32(CRC32C.checksum(body))
        #expect(group.encoded() == expected)
        #expect(try CommitGroup.decode(expected) == group)
        #expect(try FormatGoldenTests.golden("commit group") == expected)
    }
}
