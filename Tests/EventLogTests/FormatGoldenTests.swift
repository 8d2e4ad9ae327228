import Foundation
import Testing
import TestSupport
@testable import EventLog

/// Every on-disk encoding, byte for byte, two ways: against bytes built here from the layout
/// docs/STORAGE.md describes (so a change to the code that the docs do not describe fails), and
/// against the golden hex examples written in docs/STORAGE.md itself (so the docs cannot drift
/// from the code again: they did, on the manifest entry size and the `stats` value).
struct FormatGoldenTests {
    // MARK: the layouts, written out from the docs

    static func be64(_ v: UInt64) -> [UInt8] { (0..<8).reversed().map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
    static func be32(_ v: UInt32) -> [UInt8] { (0..<4).reversed().map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
    static func varint(_ v: UInt64) -> [UInt8] {
        var v = v
        var out: [UInt8] = []
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        return out + [UInt8(v)]
    }
    static func bytes(_ s: String) -> [UInt8] { varint(UInt64(s.utf8.count)) + Array(s.utf8) }
    static func crc(_ id: EventID, _ body: [UInt8]) -> [UInt8] { be32(CRC32C.checksum(be64(id) + body)) }

    /// id 5, epoch 1, time 1000, type "t", parents [3, 4], key "k", payload {"a":1}.
    static let event = Event(
        id: 5, epoch: 1, timeUnixNano: 1_000, type: "t", parents: [3, 4], key: "k", stream: nil, message: nil,
        payload: Array(#"{"a":1}"#.utf8))

    @Test func theRecordIsItsDocumentedLayout() throws {
        // version, flags (key | payload), epoch, zigzag(1000) = 2000, type, parents as deltas (2, 1), key, payload
        let body: [UInt8] = [1, 0b1001] + Self.varint(1) + Self.varint(2_000) + Self.bytes("t")
            + Self.varint(2) + Self.varint(2) + Self.varint(1) + Self.bytes("k") + Self.bytes(#"{"a":1}"#)
        let expected = body + Self.crc(5, body)
        #expect(RecordCodec.encode(Self.event) == expected)
        #expect(try RecordCodec.decode(id: 5, expected) == Self.event)
        #expect(try Self.golden("record") == expected)
    }

    /// The golden record compacted: skeleton with flags | compacted, payload size and CRC-32C,
    /// own checksum, then the original checksum.
    @Test func theCompactedRecordIsItsDocumentedLayout() throws {
        let original = RecordCodec.encode(Self.event)
        let payload = Array(#"{"a":1}"#.utf8)
        let skeleton: [UInt8] = [1, 0b1_1001] + Self.varint(1) + Self.varint(2_000) + Self.bytes("t")
            + Self.varint(2) + Self.varint(2) + Self.varint(1) + Self.bytes("k") + Self.varint(UInt64(payload.count)) + Self.be32(CRC32C.checksum(payload))
        let expected = skeleton + Self.crc(5, skeleton) + Array(original.suffix(4))
        #expect(RecordCodec.compacted(id: 5, original, event: Self.event) == expected)
        #expect(try Self.golden("compacted record") == expected)
    }

    @Test func theIndexBlockIsItsDocumentedLayout() throws {
        let block = IndexBlock(first: 7, entries: [
            .init(type: 1, stream: 0, parents: [6]), .init(type: 2, stream: 3, parents: [1, 7]),
        ])
        // version, count, then per event type id, stream id, parent count, deltas (id - parent)
        let body: [UInt8] = [1] + Self.varint(2)
            + Self.varint(1) + Self.varint(0) + Self.varint(1) + Self.varint(1)
            + Self.varint(2) + Self.varint(3) + Self.varint(2) + Self.varint(7) + Self.varint(1)
        let expected = body + Self.crc(7, body)
        #expect(block.encoded() == expected)
        #expect(try IndexBlock.decode(first: 7, expected) == block)
        #expect(try Self.golden("index block") == expected)
    }

    @Test func theSegmentEntryIsItsDocumentedLayout() throws {
        let entry = SegmentEntry(first: 1, last: 65_536, firstTimeUnixNano: -5, lastTimeUnixNano: 99, bytes: 12_345, checksum: 0xDEAD_BEEF)
        let expected = Self.be64(1) + Self.be64(65_536) + Self.be64(UInt64(bitPattern: -5)) + Self.be64(99) + Self.be64(12_345) + Self.be32(0xDEAD_BEEF)
        #expect(expected.count == 44)
        #expect(entry.encoded() == expected)
        #expect(try SegmentEntry.decode(expected) == entry)
        #expect(try Self.golden("segment entry") == expected)
    }

    @Test func theMetaValuesAreTheirDocumentedLayouts() throws {
        let meta = StoreMeta(epochHistory: [(1, 1), (2, 500)], edges: 7, nextTypeID: 3, nextStreamID: 2)
        #expect(StoreMeta.encodedFormatVersion() == Self.be32(2))
        #expect(meta.encodedEpochHistory() == Self.be64(1) + Self.be64(1) + Self.be64(2) + Self.be64(500))
        #expect(meta.encodedStats() == Self.be64(7) + Self.be32(3) + Self.be32(2))
        #expect(try Self.golden("stats") == meta.encodedStats())
        #expect(try Self.golden("epoch history") == meta.encodedEpochHistory())
    }

    @Test func thePrunedPrefixIsItsDocumentedLayout() throws {
        let prefix = PrunedPrefix(
            firstID: 201, edgesBelow: 350, keysBelow: 149, typesBelow: 3, streamsBelow: 4,
            archives: [.init(firstID: 101, name: "a.bsnap"), .init(firstID: 201, name: "snap-230.bsnap")])
        let expected = Self.be64(201) + Self.be64(350) + Self.be64(149) + Self.be32(3) + Self.be32(4)
            + Self.be64(101) + Self.be32(7) + Array("a.bsnap".utf8) + Self.be64(201) + Self.be32(14) + Array("snap-230.bsnap".utf8)
        #expect(prefix.encoded() == expected)
        #expect(try Self.golden("pruned prefix") == expected)
        #expect(try PrunedPrefix.decode(expected) == prefix)
        #expect(MetaKey.prunedPrefix == Array("pruned_prefix".utf8))
        #expect(throws: StorageError.self) { try PrunedPrefix.decode(Array(expected.prefix(31))) }
        #expect(throws: StorageError.self) { try PrunedPrefix.decode(Self.be64(1) + Array(expected.dropFirst(8))) }
        #expect(throws: StorageError.self) { try PrunedPrefix.decode(Array(expected.dropLast(1))) }
        #expect(throws: StorageError.self, "archives out of order") {
            try PrunedPrefix.decode(Array(expected.prefix(32)) + Self.be64(201) + Self.be32(1) + [0x61] + Self.be64(101) + Self.be32(1) + [0x62])
        }
        #expect(prefix.archive(holding: 5) == "a.bsnap" && prefix.archive(holding: 100) == "a.bsnap" && prefix.archive(holding: 101) == "snap-230.bsnap")
    }

    @Test func theConfirmedWatermarkIsItsDocumentedLayout() async throws {
        let temp = try await TempStore.make()
        defer { temp.remove() }
        try temp.store.noteConfirmed(500)
        try temp.store.noteConfirmed(20)  // never goes back
        #expect(try temp.store.storage.meta(MetaKey.confirmedID) == Self.golden("confirmed id"))
        #expect(try Self.golden("confirmed id") == Self.be64(500))
        #expect(temp.store.confirmedID == 500)
    }

    @Test func theKeysAreTheirDocumentedLayouts() {
        #expect(KeySpace.id(0x0102_0304_0506_0708) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(MetaKey.formatVersion == Array("format_version".utf8))
        #expect(MetaKey.epochHistory == Array("epoch_history".utf8))
        #expect(MetaKey.stats == Array("stats".utf8))
        #expect(MetaKey.confirmedID == Array("confirmed_id".utf8))
        #expect(MetaKey.type("job.done") == Array("type/job.done".utf8))
        #expect(MetaKey.stream("s") == Array("stream/s".utf8))
        #expect(MetaKey.segment(65_537) == Array("segment/".utf8) + Self.be64(65_537))
        #expect(KeySpace.Family.allCases.map(\.name) == ["log", "index", "keys", "meta"])
    }

    // MARK: the examples in docs/STORAGE.md

    static let storageDoc: String = {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: repo.appendingPathComponent("docs/STORAGE.md"), encoding: .utf8)) ?? ""
    }()

    /// The hex of the line `golden <name>: ...` in docs/STORAGE.md: the bytes between backticks after it.
    static func golden(_ name: String) throws -> [UInt8] {
        let lines = storageDoc.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0.hasPrefix("golden \(name):") }, "docs/STORAGE.md has no `golden \(name):` example")
        let hexLine = try #require(lines[start...].dropFirst().first { $0.hasPrefix("`") }, "no hex after `golden \(name):`")
        return try hexLine.filter { $0 != "`" }.split(separator: " ").map { try #require(UInt8($0, radix: 16), "bad hex \($0)") }
    }
}
