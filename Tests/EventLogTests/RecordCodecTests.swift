import Testing
import TestSupport
@testable import EventLog

struct RecordCodecTests {
    static func randomEvent(_ rng: inout SeededRandom, id: EventID) -> Event {
        let parentCount = id == 1 ? 0 : Int.random(in: 0...min(5, Int(id - 1)), using: &rng)
        var parents: [EventID] = []
        while parents.count < parentCount {
            let p = EventID.random(in: 1..<id, using: &rng)
            if !parents.contains(p) { parents.append(p) }
        }
        func maybe(_ s: String) -> String? { Bool.random(using: &rng) ? s : nil }
        return Event(
            id: id, epoch: UInt64.random(in: 1...5, using: &rng), timeUnixNano: Int64.random(in: Int64.min...Int64.max, using: &rng),
            type: "type-\(Int.random(in: 0..<20, using: &rng))-é", parents: parents, key: maybe("key-\(id)-ü"),
            stream: maybe("job_events:job_\(id % 7)"), message: maybe("Nguyễn Thái Ngọc Duy \u{FFFD} \(id)"),
            payload: Bool.random(using: &rng) ? Array("{\"n\":\(id),\"s\":\"x\"}".utf8) : nil)
    }

    @Test func roundTripsRandomEvents() throws {
        var rng = SeededRandom(seed: SeededRandom.seed("RecordCodecTests.roundTripsRandomEvents"))
        for id in EventID(1)...2_000 {
            let event = Self.randomEvent(&rng, id: id)
            let encoded = RecordCodec.encode(event)
            #expect(try RecordCodec.decode(id: id, encoded) == event)
        }
    }

    @Test func everyFlippedByteIsDetected() throws {
        var rng = SeededRandom(seed: 42)
        let event = Self.randomEvent(&rng, id: 77)
        let encoded = RecordCodec.encode(event)
        for index in encoded.indices {
            var damaged = encoded
            damaged[index] ^= 0x40
            #expect(throws: StorageError.self) { try RecordCodec.decode(id: 77, damaged) }
        }
        #expect(throws: StorageError.self) { try RecordCodec.decode(id: 78, encoded) }
        #expect(throws: StorageError.self) { try RecordCodec.decode(id: 77, Array(encoded.dropLast(5))) }
    }

    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        let long = [UInt8](repeating: 0xAB, count: 1_000)
        #expect(CRC32C.update(CRC32C.checksum(long[..<333]), long[333...]) == CRC32C.checksum(long))
    }

    @Test func segmentEntriesRoundTrip() throws {
        let entry = SegmentEntry(first: 1, last: 65_536, firstTimeUnixNano: -5, lastTimeUnixNano: 99, bytes: 12_345, checksum: 0xDEAD_BEEF)
        #expect(try SegmentEntry.decode(entry.encoded()) == entry)
        #expect(throws: StorageError.self) { try SegmentEntry.decode(Array(entry.encoded().dropLast())) }
    }
}
