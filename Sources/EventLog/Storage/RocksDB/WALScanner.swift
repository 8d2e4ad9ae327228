#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads RocksDB's write-ahead log files without RocksDB, to find out before an open whether
/// recovery would lose acknowledged writes.
///
/// RocksDB's recovery modes cannot tell a torn tail (a write cut short by a crash, never
/// acknowledged) from damage: its default, point-in-time recovery, silently stops at the first
/// bad record and drops every acknowledged write after it; tolerating only corrupted tail records
/// still drops a complete last record whose length field was damaged. This scan reads every
/// record, checks its checksum, and classifies each file as clean, ending in an incomplete record
/// (tolerated), or damaged (refused by `EventStore.open`). It also reports the highest sequence
/// number and, per column family, the highest 8-byte key written by intact records, so that a
/// refusal can name the ids that depend on the damaged record.
///
/// Format (RocksDB `db/log_format.h`, non-recycled logs): 32 KiB blocks; each record is a 7-byte
/// header (masked CRC-32C of type and payload, little-endian; length, 2 bytes little-endian; type)
/// and its payload. Records never cross a block; a block's last 1–6 bytes are zero padding.
/// Types: 0 zero (preallocated space), 1 full, 2 first, 3 middle, 4 last fragment. A logical
/// record is a `WriteBatch`: sequence (8 bytes LE), count (4 bytes LE), then its entries.
/// Banyan never enables log recycling or WAL compression, whose record types (5–10) this scan
/// treats like any record it cannot read: as damage.
struct WALScanner {
    static let blockBytes = 32_768
    static let headerBytes = 7

    /// One damaged record: where, and why.
    struct Damage: Sendable, Equatable {
        var file: String
        var offset: Int
        var reason: String
    }

    /// What one scan found over a directory's WAL files.
    struct Result: Sendable {
        /// File names scanned, oldest first.
        var files: [String] = []
        /// The first damaged record, in log order.
        var damage: Damage?
        /// An incomplete record at the very end of the newest file: a write cut short (bytes dropped).
        var incompleteTail: (file: String, offset: Int, bytes: Int)?
        /// The highest sequence number of an intact record before the first damage.
        var lastSequenceBeforeDamage: UInt64 = 0
        /// The highest sequence number of any intact record, including those after damage.
        var lastSequence: UInt64 = 0
        /// Per column family id: the highest 8-byte key (big-endian) put by an intact record,
        /// or by a damaged one whose keys extend the intact ones without a gap (`finish`).
        var highestKey: [UInt32: UInt64] = [:]
        /// Per column family: the lowest and highest 8-byte keys, and how many, of damaged records.
        var suspectKeys: [UInt32: (low: UInt64, high: UInt64, count: UInt64)] = [:]
        var records = 0

        var isClean: Bool { damage == nil }
    }

    /// Scans every `*.log` file of `directory` (RocksDB's live WALs), oldest first.
    static func scan(directory: String) -> Result {
        var result = Result()
        let names = walFiles(in: directory)
        for (i, name) in names.enumerated() {
            result.files.append(name)
            let mapped = withMappedFile(directory + "/" + name) { bytes in
                scan(bytes, file: name, isNewest: i == names.count - 1, into: &result)
            }
            if let code = mapped {
                // Gone since the listing: a running server deleted a log it no longer needs.
                if code == ENOENT { continue }
                if result.damage == nil { result.damage = Damage(file: name, offset: 0, reason: "the file cannot be read (errno \(code))") }
            }
        }
        finish(&result)
        return result
    }

    /// A damaged record's keys are believed only when they continue the intact keys of their
    /// family exactly (`highest + 1 ... highest + count`, no gap): the ids of a damaged last
    /// commit group, say. A flipped bit in a key breaks the run and the record is not believed.
    /// Without damage the only suspect is an incomplete tail, a write that never completed: not believed.
    static func finish(_ result: inout Result) {
        defer { result.suspectKeys = [:] }
        guard result.damage != nil else { return }
        for (family, suspect) in result.suspectKeys {
            let highest = result.highestKey[family] ?? 0
            if suspect.low == highest + 1, suspect.high - suspect.low + 1 == suspect.count {
                result.highestKey[family] = suspect.high
            }
        }
    }

    /// WAL file names (`<number>.log`) in `directory`, by number.
    static func walFiles(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [(UInt64, String)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard name.hasSuffix(".log"), let number = UInt64(name.dropLast(4)) else { continue }
            names.append((number, name))
        }
        return names.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// Runs `body` over the file mapped read-only (a log can be hundreds of megabytes; nothing is
    /// copied into memory but the records being reassembled). The errno on failure, nil on success.
    private static func withMappedFile(_ path: String, _ body: (UnsafeBufferPointer<UInt8>) -> Void) -> Int32? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return errno }
        let size = Int(info.st_size)
        guard size > 0 else { return nil }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else { return errno }
        defer { munmap(base, size) }
        body(UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: size))
        return nil
    }

    static func scan(_ bytes: [UInt8], file: String, isNewest: Bool, into result: inout Result) {
        bytes.withUnsafeBufferPointer { scan($0, file: file, isNewest: isNewest, into: &result) }
    }

    /// Scans one file's bytes. After damage the scan goes on, so that intact records written
    /// after the damaged one still count towards what a refusal reports: in step with the
    /// records when the damaged one's length is plausible, from the next block otherwise.
    static func scan(_ bytes: UnsafeBufferPointer<UInt8>, file: String, isNewest: Bool, into result: inout Result) {
        var offset = 0
        var fragments: [UInt8]?
        var fragmentStart = 0
        var fragmentsIntact = true
        func damaged(_ at: Int, _ reason: String, _ result: inout Result) {
            if result.damage == nil { result.damage = Damage(file: file, offset: at, reason: reason) }
        }
        while offset < bytes.count {
            let blockLeft = blockBytes - offset % blockBytes
            if blockLeft < headerBytes {
                offset += blockLeft
                continue
            }
            if offset + headerBytes > bytes.count {
                if bytes[offset...].allSatisfy({ $0 == 0 }) { break }
                tail(at: offset, bytes.count - offset, [], file: file, isNewest: isNewest, into: &result)
                return
            }
            let stored = unmask(le32(bytes, offset))
            var length = Int(bytes[offset + 4]) | Int(bytes[offset + 5]) << 8
            var type = bytes[offset + 6]
            if type == 0 && length == 0 && stored == unmask(0) {
                // Preallocated or padded space: RocksDB skips to the next block.
                offset += blockLeft
                continue
            }
            let payloadStart = offset + headerBytes
            // The rest of the block (or file): where the last record of a block or file ends.
            let rest = min(blockLeft, bytes.count - offset) - headerBytes
            var intact = false
            if length <= rest, let t = typeChecking(stored, bytes, payloadStart, length, header: type) {
                if t != type { damaged(offset, "the type byte of a complete record is damaged", &result) }
                type = t
                intact = true
            } else if rest != length, rest >= 0, let t = typeChecking(stored, bytes, payloadStart, rest, header: type) {
                // A record running to the end of its block or file checks out with that length:
                // complete, with only its length field damaged.
                damaged(offset, "the length field of a complete record is damaged", &result)
                (type, length, intact) = (t, rest, true)
            } else if payloadStart + length > bytes.count, offset + blockLeft >= bytes.count {
                let partial = (fragments ?? []) + UnsafeBufferPointer(rebasing: bytes[payloadStart...])
                tail(at: fragments == nil ? offset : fragmentStart, bytes.count - (fragments == nil ? offset : fragmentStart), partial[...],
                     file: file, isNewest: isNewest, into: &result)
                return
            } else if length > rest {
                damaged(offset, "bad record length \(length)", &result)
                fragments = nil
                offset += blockLeft
                continue
            } else {
                // The content is untrusted, but the length is plausible, so the scan stays in step
                // and keeps the record's keys aside (`finish` decides whether to believe them).
                damaged(offset, "checksum mismatch", &result)
            }
            let payload = UnsafeBufferPointer(rebasing: bytes[payloadStart..<(payloadStart + length)])
            offset = payloadStart + length
            switch type {
            case 1, 2:
                if fragments != nil { damaged(fragmentStart, "a fragmented record has no last fragment", &result) }
                if type == 1 {
                    fragments = nil
                    batch(ArraySlice(payload), intact: intact, into: &result)
                } else {
                    fragments = Array(payload)
                    fragmentsIntact = intact
                    fragmentStart = payloadStart - headerBytes
                }
            case 3, 4:
                guard var assembled = fragments else {
                    damaged(payloadStart - headerBytes, "a record fragment without its first fragment", &result)
                    continue
                }
                fragments = nil  // one reference, so the append does not copy
                assembled.append(contentsOf: payload)
                fragmentsIntact = fragmentsIntact && intact
                if type == 4 {
                    batch(assembled[...], intact: fragmentsIntact, into: &result)
                    fragments = nil
                } else {
                    fragments = assembled
                }
            default:
                damaged(payloadStart - headerBytes, "unknown record type \(type)", &result)
                fragments = nil
            }
        }
        if let fragments {
            tail(at: fragmentStart, bytes.count - fragmentStart, fragments[...], file: file, isNewest: isNewest, into: &result)
        }
    }

    /// The record type (1–4) for which `count` bytes at `start` match the checksum, if any:
    /// the header's own type first.
    private static func typeChecking(_ stored: UInt32, _ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int, header: UInt8) -> UInt8? {
        ([header] + [1, 2, 3, 4].filter { $0 != header }).first { (1...4).contains($0) && checksum($0, bytes, start, count) == stored }
    }

    /// The file ends inside a record (`bytes` long from `offset`; `partial` is what arrived of
    /// its payload). Only the newest file may: a write cut short by a crash. Anywhere else it is
    /// damage, since RocksDB starts a new file only after the old one is complete.
    private static func tail(
        at offset: Int, _ bytes: Int, _ partial: ArraySlice<UInt8>, file: String, isNewest: Bool, into result: inout Result
    ) {
        if isNewest {
            result.incompleteTail = (file, offset, bytes)
            // Its keys may have been acknowledged if this is a truncation rather than a torn
            // write; they count only if damage elsewhere makes the question matter (`finish`).
            batch(partial, intact: false, into: &result)
        } else if result.damage == nil {
            result.damage = Damage(file: file, offset: offset, reason: "the file ends inside a record but is not the newest log")
        }
    }

    /// Reads one `WriteBatch`. Intact batches count fully; a damaged one's keys are kept aside
    /// for `finish`, so a flipped bit cannot claim an id far in the future.
    static func batch(_ rep: ArraySlice<UInt8>, intact: Bool, into result: inout Result) {
        guard rep.count >= 12 else { return }
        let base = rep.startIndex
        let sequence = UInt64(le32(rep, base)) | UInt64(le32(rep, base + 4)) << 32
        let count = UInt64(le32(rep, base + 8))
        var keys: [UInt32: (low: UInt64, high: UInt64, count: UInt64)] = [:]
        var r = base + 12
        func varint() -> UInt64? { Varint.read(rep, at: &r) }
        func slice() -> ArraySlice<UInt8>? {
            guard let n = varint(), n <= UInt64(rep.endIndex - r) else { return nil }
            defer { r += Int(n) }
            return rep[r..<(r + Int(n))]
        }
        entries: while r < rep.endIndex {
            let tag = rep[r]
            r += 1
            var family: UInt32 = 0
            switch tag {
            case 0x4, 0x5, 0x6, 0x8, 0xE, 0x10, 0x17:  // the column-family forms
                guard let f = varint(), f <= UInt64(UInt32.max) else { break entries }
                family = UInt32(f)
            default: break
            }
            switch tag {
            case 0x1, 0x5, 0x16, 0x17:  // put, wide-column put
                guard let key = slice(), slice() != nil else { break entries }
                if key.count == 8 {
                    let k = key.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    let seen = keys[family] ?? (k, k, 0)
                    keys[family] = (min(seen.low, k), max(seen.high, k), seen.count + 1)
                }
            case 0x2, 0x6, 0x10, 0x11, 0xE, 0xF:  // merge, blob index, range deletion: two slices
                guard slice() != nil, slice() != nil else { break entries }
            case 0x0, 0x4, 0x7, 0x8, 0x14, 0x3, 0xA, 0xB, 0xC:  // one slice
                guard slice() != nil else { break entries }
            case 0x9, 0xD, 0x12, 0x13: break
            default: break entries
            }
        }
        if intact {
            result.records += 1
            let last = count > 0 ? sequence + count - 1 : sequence
            result.lastSequence = max(result.lastSequence, last)
            if result.damage == nil { result.lastSequenceBeforeDamage = max(result.lastSequenceBeforeDamage, last) }
            for (family, run) in keys { result.highestKey[family] = max(result.highestKey[family] ?? 0, run.high) }
        } else {
            for (family, run) in keys {
                if let seen = result.suspectKeys[family] {
                    result.suspectKeys[family] = (min(seen.low, run.low), max(seen.high, run.high), seen.count + run.count)
                } else {
                    result.suspectKeys[family] = run
                }
            }
        }
    }

    static func unmask(_ masked: UInt32) -> UInt32 {
        let rotated = masked &- 0xA282_EAD8
        return (rotated >> 17) | (rotated << 15)
    }

    static func mask(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    static func checksum(_ type: UInt8, _ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> UInt32 {
        let head = CRC32C.update(0, CollectionOfOne(type))
        return CRC32C.update(head, UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[start..<(start + count)])))
    }

    private static func le32<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes, _ at: Int) -> UInt32 where Bytes.Index == Int {
        UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }
}
