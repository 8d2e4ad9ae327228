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

    /// A leader reads each shipped record's epoch and key in place (`epochAndKey`), without
    /// decoding the rest: it must read what `decode` reads, and nothing past the bytes it is given.
    @Test func epochAndKeyReadsWhatDecodeReads() throws {
        var rng = SeededRandom(seed: SeededRandom.seed("RecordCodecTests.epochAndKeyReadsWhatDecodeReads"))
        for id in EventID(1)...300 {
            let event = Self.randomEvent(&rng, id: id)
            let encoded = RecordCodec.encode(event)
            let read = encoded.withUnsafeBytes { RecordCodec.epochAndKey(of: $0) }
            #expect(read?.epoch == event.epoch && read?.key == event.key, "id \(id)")
            for cut in 0..<encoded.count {
                let short = Array(encoded.prefix(cut)).withUnsafeBytes { RecordCodec.epochAndKey(of: $0) }
                if cut <= 6 { #expect(short == nil) }
            }
        }
        var keyed = Self.randomEvent(&rng, id: 9)
        keyed.key = "KEYBYTES"
        var encoded = RecordCodec.encode(keyed)
        let at = try #require((0..<encoded.count - 8).first { Array(encoded[$0..<($0 + 8)]) == Array("KEYBYTES".utf8) })
        encoded[at + 3] = 0xFF
        #expect(encoded.withUnsafeBytes { RecordCodec.epochAndKey(of: $0) } == nil, "a key that is not UTF-8")
    }

    /// A record's members written straight from its bytes (`StoredRecord`, what query pages and
    /// meta trees write) are the bytes its decoded `Event` writes: each member, the sets of
    /// fields the server asks for, both layouts, compacted records, strings that need escaping.
    @Test func aRecordReadInPlaceWritesTheJSONItsEventWrites() throws {
        let seed = SeededRandom.seed("RecordCodecTests.recordJSON")
        var rng = SeededRandom(seed: seed)
        var compactedCount = 0
        for id in EventID(1)...600 {
            var event = Self.randomEvent(&rng, id: id)
            if Bool.random(using: &rng) {
                event.type = "t\"\\\(id)\u{7F}"
                event.message = "quote \" back \\ line \n tab \t control \u{1} \u{2028} é"
                event.key = event.key.map { $0 + "\u{0}" }
            }
            var encodings = [RecordCodec.encode(event)]
            if let compact = RecordCodec.compacted(id: id, encodings[0], event: event) {
                encodings.append(compact)
                compactedCount += 1
            }
            for bytes in encodings {
                let record = try RecordCodec.parse(id: id, bytes)
                let decoded = try RecordCodec.decode(id: id, bytes)
                #expect(try record.event() == decoded, "seed \(seed), id \(id)")
                #expect(record.parentCount == decoded.parents.count)
                var differing: [String] = []
                for layout in [EventJSON.Layout.wire, .export] {
                    // Each member alone and the sets the server writes (members are written independently).
                    for fields in (0..<8).map({ EventJSON.Fields(rawValue: 1 << $0) }) + [[], .all, .celestialTree, [.time, .type, .message, .payload]] {
                        var fromRecord = JSONWriter()
                        var fromEvent = JSONWriter()
                        EventJSON.write(record, fields: fields, layout: layout, into: &fromRecord)
                        EventJSON.write(decoded, fields: fields, layout: layout, into: &fromEvent)
                        if fromRecord.bytes != fromEvent.bytes { differing.append("\(layout) \(fields.rawValue): \(String(decoding: fromRecord.bytes, as: UTF8.self))") }
                    }
                }
                #expect(differing.isEmpty, "seed \(seed), id \(id): \(differing.prefix(3))")
            }
        }
        #expect(compactedCount > 200)
    }

    /// A string member that is not UTF-8 is refused even when the checksum covers it (a record
    /// written by something else than this codec): it would otherwise reach an answer as is.
    /// Both ways of reading check it: `parse` for writing members from the bytes, and
    /// `event()` for decoding (`decode`, and a record parsed without `checkText`).
    @Test func aStoredStringThatIsNotUTF8IsRefused() throws {
        var rng = SeededRandom(seed: 11)
        func withChecksum(_ bytes: inout [UInt8]) {
            let crc = RecordCodec.checksum(id: 5, bytes[0..<(bytes.count - 4)])
            bytes.replaceSubrange((bytes.count - 4)..., with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        }
        for member in ["TYPEBYTE", "KEYBYTES", "STREAMBB", "MESSAGEB"] {
            var event = Self.randomEvent(&rng, id: 5)
            event.type = member == "TYPEBYTE" ? member : "t"
            event.key = member == "KEYBYTES" ? member : nil
            event.stream = member == "STREAMBB" ? member : nil
            event.message = member == "MESSAGEB" ? member : nil
            var bytes = RecordCodec.encode(event)
            let at = try #require((0..<bytes.count - 8).first { Array(bytes[$0..<($0 + 8)]) == Array(member.utf8) })
            bytes[at + 2] = 0xFF
            withChecksum(&bytes)
            #expect(throws: StorageError.self, "\(member)") { try RecordCodec.parse(id: 5, bytes) }
            #expect(throws: StorageError.self, "\(member)") { try RecordCodec.decode(id: 5, bytes) }
            let unchecked = try RecordCodec.parse(id: 5, bytes, checkText: false)
            #expect(throws: StorageError.self, "\(member)") { try unchecked.event() }
            bytes[at + 2] = UInt8(ascii: "x")
            withChecksum(&bytes)
            let fixed = Array(member.utf8.prefix(2)) + [UInt8(ascii: "x")] + Array(member.utf8.dropFirst(3))
            let decoded = try RecordCodec.parse(id: 5, bytes).event()
            let read = [decoded.type, decoded.key, decoded.stream, decoded.message].compactMap { $0 }.first { $0.count == 8 }
            #expect(read.map { Array($0.utf8) } == fixed, "\(member) with a valid byte")
            #expect(try RecordCodec.decode(id: 5, bytes) == decoded)
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

    /// Compaction keeps the skeleton, the sizes and checksums of what it drops, the original
    /// size (segment accounting) and the original checksum as the last 4 bytes (the segment
    /// chain), and decoding proves that checksum from what it kept.
    @Test func compactedRecordsKeepTheSkeletonAndProveTheOriginalChecksum() throws {
        var rng = SeededRandom(seed: SeededRandom.seed("RecordCodecTests.compactedRecords"))
        var compactedCount = 0
        for id in EventID(1)...2_000 {
            let event = Self.randomEvent(&rng, id: id)
            let original = RecordCodec.encode(event)
            guard let compact = RecordCodec.compacted(id: id, original, event: event) else {
                #expect(event.message == nil && event.payload == nil)
                continue
            }
            compactedCount += 1
            let decoded = try RecordCodec.decode(id: id, compact)
            var skeleton = event
            skeleton.message = nil
            skeleton.payload = nil
            skeleton.compaction = decoded.compaction
            #expect(decoded == skeleton)
            #expect(decoded.compaction?.matches(message: event.message, payload: event.payload) == true)
            if let message = event.message {
                #expect(decoded.compaction?.matches(message: message + "!", payload: event.payload) == false)
            } else {
                #expect(decoded.compaction?.matches(message: nil, payload: event.payload.map { $0 + [0x20] }) == false)
            }
            #expect(Array(compact.suffix(4)) == Array(original.suffix(4)))
            #expect(RecordCodec.originalSize(of: compact) == UInt64(original.count))
            #expect(RecordCodec.checksumMatches(id: id, compact[...]))
            #expect(RecordCodec.compacted(id: id, compact, event: decoded) == nil, "compacting twice changes nothing")
        }
        #expect(compactedCount > 1_000)
    }

    @Test func aCompactedRecordCannotClaimAnotherSkeleton() throws {
        var rng = SeededRandom(seed: 7)
        var event = Self.randomEvent(&rng, id: 77)
        event.payload = Array(#"{"x":1}"#.utf8)
        let original = RecordCodec.encode(event)
        let compact = try #require(RecordCodec.compacted(id: 77, original, event: event))
        for index in compact.indices {
            var damaged = compact
            damaged[index] ^= 0x40
            #expect(throws: StorageError.self) { try RecordCodec.decode(id: 77, damaged) }
        }
        // A forged skeleton with a correct own checksum still fails: the original checksum it
        // carries is not the one its skeleton and dropped parts prove.
        var forged = event
        forged.type += "x"
        let other = try #require(RecordCodec.compacted(id: 77, RecordCodec.encode(forged), event: forged))
        let spliced = Array(other.dropLast(4)) + Array(compact.suffix(4))
        #expect(throws: StorageError.self) { try RecordCodec.decode(id: 77, spliced) }
    }

    @Test func crc32cCombineEqualsTheChecksumOfTheConcatenation() {
        var rng = SeededRandom(seed: 11)
        for _ in 0..<200 {
            let a = (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let b = (0..<Int.random(in: 0...3_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(CRC32C.combine(CRC32C.checksum(a), CRC32C.checksum(b), lengthB: UInt64(b.count)) == CRC32C.checksum(a + b))
        }
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
