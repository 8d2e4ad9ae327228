import Foundation
import Testing
import TestSupport
@testable import EventLog

/// A damaged write-ahead log must never be opened silently: RocksDB's own recovery would drop
/// every acknowledged write after the damage and the next append would reuse their ids.
struct WALDamageTests {
    // MARK: the format, byte for byte

    /// RocksDB's masked CRC-32C of a log record (`util/crc32c.h` Mask), written out here so the
    /// test does not share the scanner's code.
    static func masked(_ type: UInt8, _ payload: [UInt8]) -> UInt32 {
        let crc = CRC32C.checksum([type] + payload)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    static func record(_ type: UInt8, _ payload: [UInt8]) -> [UInt8] {
        let crc = masked(type, payload)
        return [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24),
                UInt8(payload.count & 0xFF), UInt8(payload.count >> 8), type] + payload
    }

    /// A `WriteBatch`: sequence, count, then `put_cf` entries (tag 5, family, key, value).
    static func writeBatch(sequence: UInt64, puts: [(family: UInt8, key: UInt64, value: [UInt8])]) -> [UInt8] {
        var rep: [UInt8] = []
        for i in 0..<8 { rep.append(UInt8(sequence >> (8 * UInt64(i)) & 0xFF)) }
        for i in 0..<4 { rep.append(UInt8(UInt32(puts.count) >> (8 * UInt32(i)) & 0xFF)) }
        for put in puts {
            rep += [0x05, put.family, 8]
            for i in (0..<8).reversed() { rep.append(UInt8(put.key >> (8 * UInt64(i)) & 0xFF)) }
            precondition(put.value.count < 128)
            rep += [UInt8(put.value.count)] + put.value
        }
        return rep
    }

    static func scan(_ bytes: [UInt8]) -> WALScanner.Result {
        var result = WALScanner.Result()
        WALScanner.scan(bytes, file: "000001.log", isNewest: true, into: &result)
        WALScanner.finish(&result)
        return result
    }

    @Test func theScannerReadsRecordsFragmentsAndBlockPaddingAsRocksDBWritesThem() throws {
        let first = Self.writeBatch(sequence: 7, puts: [(1, 42, Array("abc".utf8)), (2, 5, [])])
        var bytes = Self.record(1, first)
        // Pad to 3 bytes before the block end: RocksDB zero-fills a block tail shorter than a header.
        bytes += Self.record(1, Self.writeBatch(sequence: 9, puts: [(1, 43, Array(repeating: 0x61, count: 100))]))
        let third = Self.writeBatch(sequence: 10, puts: [(3, 1, [])])
        let filler = 32_768 - 3 - bytes.count - 7 - third.count
        bytes += Self.record(1, third + Array(repeating: 0x0D, count: filler))  // kTypeNoop tags, ignored
        #expect(bytes.count == 32_765)
        bytes += [0, 0, 0]
        // One batch over two blocks: a first and a last fragment.
        var big = Self.writeBatch(sequence: 11, puts: [(1, 44, [])])
        big += Array(repeating: 0x0D, count: 40_000)  // kTypeNoop tags, ignored
        let firstPart = 32_768 - 7
        bytes += Self.record(2, Array(big[0..<firstPart])) + Self.record(4, Array(big[firstPart...]))
        let result = Self.scan(bytes)
        #expect(result.damage == nil)
        #expect(result.incompleteTail == nil)
        #expect(result.records == 4)
        #expect(result.lastSequence == 11)
        #expect(result.highestKey == [1: 44, 2: 5, 3: 1])

        // A flipped payload byte: damage at the record, the later records still count.
        var damaged = bytes
        damaged[20] ^= 0x01
        let d = Self.scan(damaged)
        #expect(d.damage == WALScanner.Damage(file: "000001.log", offset: 0, reason: "checksum mismatch"))
        #expect(d.lastSequenceBeforeDamage == 0)
        #expect(d.highestKey[1] == 44)

        // The last record cut short: an incomplete tail, not damage.
        let cut = Self.scan(Array(bytes.dropLast(100)))
        #expect(cut.damage == nil)
        #expect(cut.incompleteTail?.offset == 32_768 && cut.incompleteTail?.bytes == bytes.count - 100 - 32_768)
        #expect(cut.highestKey[1] == 43, "the cut-short batch's key is not believed without damage elsewhere")

        // The same cut in an older file is damage: RocksDB only starts a new log after the old one is complete.
        var older = WALScanner.Result()
        WALScanner.scan(Array(bytes.dropLast(100)), file: "000001.log", isNewest: false, into: &older)
        #expect(older.damage?.reason == "the file ends inside a record but is not the newest log")
    }

    @Test func aDamagedLengthOrTypeOfACompleteLastRecordIsDamageNotATornTail() throws {
        let batch = Self.writeBatch(sequence: 3, puts: [(1, 10, [1, 2, 3])])
        let clean = Self.record(1, Self.writeBatch(sequence: 1, puts: [(1, 9, [])])) + Self.record(1, batch)
        let last = clean.count - batch.count - 7
        var length = clean
        length[last + 5] ^= 0x40  // the length now runs past the end of the file
        let l = Self.scan(length)
        #expect(l.damage?.reason == "the length field of a complete record is damaged")
        #expect(l.highestKey[1] == 10 && l.incompleteTail == nil)
        var type = clean
        type[last + 6] = 2  // full -> first: the checksum holds only for type 1
        let t = Self.scan(type)
        #expect(t.damage?.reason == "the type byte of a complete record is damaged")
        #expect(t.highestKey[1] == 10)
    }

    // MARK: a real store's log

    /// A store with 20 acknowledged keyed batches of 300 events, copied while open: what a kill -9
    /// leaves on disk, with the whole log still in the WAL.
    static func crashedStore(_ name: String) async throws -> (path: String, lastID: EventID) {
        let t = try await TempStore.make(name)
        var last: EventID = 0
        for b in 0..<20 {
            let receipt = try await t.store.append((0..<300).map { AppendRequest(type: "t", key: "k\(b)-\($0)", payload: .int($0)) }, durability: .group)
            last = receipt.results.last!.id
        }
        let copy = t.path + "-crashed"
        try FileManager.default.copyItem(atPath: t.path, toPath: copy)
        t.remove()
        return (copy, last)
    }

    /// Offsets of each record header in a WAL file (type, offset), walked independently of the scanner.
    static func records(_ bytes: [UInt8]) -> [(type: UInt8, offset: Int)] {
        var out: [(UInt8, Int)] = []
        var offset = 0
        while offset + 7 <= bytes.count {
            let left = 32_768 - offset % 32_768
            if left < 7 {
                offset += left
                continue
            }
            let length = Int(bytes[offset + 4]) | Int(bytes[offset + 5]) << 8
            out.append((bytes[offset + 6], offset))
            offset += 7 + length
        }
        return out
    }

    enum Flip: String, CaseIterable {
        case payloadAtTenPercent, payloadAtHalf, lastRecordChecksum, lastRecordLength, lastRecordType, lastByte, firstRecordLength
    }

    @Test(arguments: Flip.allCases)
    func everyFlippedByteIsRefusedAndAcceptingItNeverReusesAnId(_ flip: Flip) async throws {
        let (path, acked) = try await Self.crashedStore("flip\(flip.rawValue)")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let wal = path + "/" + (try #require(WALScanner.walFiles(in: path).last))
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: wal)))
        let records = Self.records(bytes)
        let last = try #require(records.last).offset
        switch flip {
        case .payloadAtTenPercent: bytes[bytes.count / 10] ^= 0x10
        case .payloadAtHalf: bytes[bytes.count / 2] ^= 0x10
        case .lastRecordChecksum: bytes[last] ^= 0x01
        case .lastRecordLength: bytes[last + 5] ^= 0x40
        case .lastRecordType: bytes[last + 6] ^= 0x40
        case .lastByte: bytes[bytes.count - 1] ^= 0x01
        case .firstRecordLength: bytes[records[0].offset + 5] ^= 0x40
        }
        try Data(bytes).write(to: URL(fileURLWithPath: wal))

        // Refused, saying what it costs.
        do {
            let store = try await EventStore.open(at: path)
            store.close()
            Issue.record("a store with a damaged WAL opened (last id \(store.lastID))")
        } catch let error as LogError {
            #expect(error.message.contains("write-ahead log is damaged"), "\(error)")
            #expect(error.message.contains("--accept-wal-loss"))
        }

        // Read-only, accepting: what verify sees. Nothing changes on disk.
        var look = StoreOptions()
        look.readOnly = true
        look.walDamage = .accept
        let reader = try await EventStore.open(at: path, options: look)
        let damage = try #require(reader.walDamage)
        #expect(damage.writtenThrough == acked, "\(damage)")
        #expect(damage.recoverableThrough < acked)
        #expect(reader.lastID == damage.recoverableThrough)
        #expect(try !reader.verify().ok)
        reader.close()

        // Writable, accepting: the lost ids become banyan.lost events; no id is given twice.
        var accept = StoreOptions()
        accept.walDamage = .accept
        let store = try await EventStore.open(at: path, options: accept)
        #expect(store.lastID == acked)
        for id in [damage.recoverableThrough + 1, acked] {
            #expect(try store.event(id)?.type == EventStore.lostEventType)
        }
        let lostKey = "k19-299"  // the last acknowledged event's key
        #expect(try store.id(forKey: lostKey) == nil)
        let again = try await store.append([AppendRequest(type: "t", key: lostKey)])
        #expect(again.results[0].id == acked + 1 && !again.results[0].duplicate)
        store.close()
        #expect(!FileManager.default.fileExists(atPath: path + "/" + WALLossNote.fileName))
        let reopened = try await EventStore.open(at: path)
        defer { reopened.close() }
        #expect(reopened.lastID == acked + 1)
        let report = try reopened.verify()
        #expect(report.ok, "\(report.problems)")
    }

    @Test func anInterruptedAcceptFinishesThePlaceholdersOnTheNextOpen() async throws {
        let (path, acked) = try await Self.crashedStore(#function)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let wal = path + "/" + (try #require(WALScanner.walFiles(in: path).last))
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: wal)))
        bytes[bytes.count / 2] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: wal))
        var accept = StoreOptions()
        accept.walDamage = .accept
        accept.createGenesis = false
        // The note as an open that crashed after RocksDB recovered (and dropped the damaged log)
        // would leave it: the next open, even without --accept-wal-loss, finishes the job.
        let store = try await EventStore.open(at: path, options: accept)
        let kept = try #require(store.walDamage).recoverableThrough
        store.close()
        try WALLossNote(file: "x.log", offset: 1, reason: "test", recoveredThrough: kept, writtenThrough: acked + 5).save(path)
        let resumed = try await EventStore.open(at: path)
        defer { resumed.close() }
        #expect(resumed.lastID == acked + 5)
        #expect(try resumed.event(acked + 5)?.type == EventStore.lostEventType)
        #expect(!FileManager.default.fileExists(atPath: path + "/" + WALLossNote.fileName))
    }

    @Test func aLogCutShortAtTheEndOpensWithoutItsIncompleteLastWrite() async throws {
        let (path, acked) = try await Self.crashedStore(#function)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let wal = path + "/" + (try #require(WALScanner.walFiles(in: path).last))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: wal))
        try bytes.dropLast(100).write(to: URL(fileURLWithPath: wal))
        // What a power cut during the last write leaves: that write was never acknowledged
        // under --fsync group, so recovery drops it (docs/OPERATIONS.md says so).
        let store = try await EventStore.open(at: path)
        defer { store.close() }
        #expect(store.lastID == acked - 300)
        #expect(store.walDamage == nil)
        #expect(store.walNote?.contains("ends in an incomplete record") == true)
    }
}
