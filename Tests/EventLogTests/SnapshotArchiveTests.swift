import Foundation
import Testing
import TestSupport
@testable import EventLog

struct SnapshotArchiveTests {
    /// A two-file image with a fixed manifest, so its archive's content is fixed.
    static func tinyImage() throws -> (directory: String, manifest: SnapshotManifest) {
        let directory = try TempDir.make("tinyImage")
        try Data("xy".utf8).write(to: URL(fileURLWithPath: directory + "/a"))
        try Data().write(to: URL(fileURLWithPath: directory + "/b.sst"))
        let manifest = SnapshotManifest(
            snapshotID: 7, epochHistory: [.init(epoch: 1, firstID: 1), .init(epoch: 3, firstID: 5)], storeFormatVersion: 2,
            createdAt: "2026-11-30T05:00:00Z", createdBy: "banyan test", files: try SnapshotArchive.describe(directory: directory))
        return (directory, manifest)
    }

    static func content(_ archive: String) throws -> [UInt8] {
        let reader = try ZstdFileReader(path: archive)
        var bytes: [UInt8] = []
        while true {
            do { bytes += try reader.read(1) } catch { break }
        }
        return bytes
    }

    static func hex(_ s: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var chars = Array(s.filter { !$0.isWhitespace })
        while !chars.isEmpty {
            bytes.append(UInt8(String(chars[0...1]), radix: 16)!)
            chars.removeFirst(2)
        }
        return bytes
    }

    /// The archive content, byte for byte, as docs/STORAGE.md describes it (and its golden example).
    @Test func theArchiveContentIsPinned() throws {
        let (directory, manifest) = try Self.tinyImage()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(manifest.files == [SnapshotFile(name: "a", size: 2, crc32c: CRC32C.checksum(Array("xy".utf8))), SnapshotFile(name: "b.sst", size: 0, crc32c: 0)])
        let archive = directory + "/out.bsnap"
        _ = try SnapshotArchive.write(manifest, from: directory, to: archive)
        let json = #"{"format_version":1,"snapshot_id":7,"epoch":3,"epoch_history":[{"epoch":1,"first_id":1},{"epoch":3,"first_id":5}],"store_format_version":2,"created_at":"2026-11-30T05:00:00Z","created_by":"banyan test","files":[{"name":"a","size":2,"crc32c":"#
            + "\(CRC32C.checksum(Array("xy".utf8)))" + #"},{"name":"b.sst","size":0,"crc32c":0}]}"#
        let jsonBytes = Array(json.utf8)
        var expected = Array("BANYANSS".utf8) + Self.hex("00000001")
        expected += withUnsafeBytes(of: UInt32(jsonBytes.count).bigEndian, Array.init)
        expected += jsonBytes
        expected += withUnsafeBytes(of: CRC32C.checksum(jsonBytes).bigEndian, Array.init)
        expected += Array("xy".utf8) + Array("BANYANSE".utf8)
        #expect(try Self.content(archive) == expected)
        #expect(try FormatGoldenTests.golden("snapshot archive content") == expected, "docs/STORAGE.md's example")
        // A zstd frame (magic 28 b5 2f fd) whose descriptor sets the content-checksum flag (bit 2).
        let raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: archive)))
        #expect(Array(raw.prefix(4)) == Self.hex("28b52ffd"))
        #expect(raw[4] & 0x04 != 0)
        // Then a skippable frame (magic 0x184D2A5B, length 4) with the CRC-32C of the bytes before it.
        #expect(Array(raw.suffix(12).prefix(8)) == Self.hex("5b2a4d18 04000000"))
        #expect(Array(raw.suffix(4)) == withUnsafeBytes(of: CRC32C.checksum(raw.dropLast(12)).bigEndian, Array.init))
        #expect(try SnapshotArchive.readManifest(archive) == manifest)
    }

    /// Every single corrupted byte, every truncation and any appended byte is refused.
    @Test func everyCorruptedByteIsDetected() throws {
        let (directory, manifest) = try Self.tinyImage()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let archive = directory + "/out.bsnap"
        _ = try SnapshotArchive.write(manifest, from: directory, to: archive)
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: archive)))
        #expect(try SnapshotArchive.unpack(archive, into: nil) == manifest)
        let bad = directory + "/bad.bsnap"
        var undetected: [String] = []
        func check(_ bytes: [UInt8], _ what: String) throws {
            try Data(bytes).write(to: URL(fileURLWithPath: bad))
            if (try? SnapshotArchive.unpack(bad, into: nil)) != nil { undetected.append(what) }
        }
        for i in good.indices {
            for flip: UInt8 in [0x01, 0x80, 0xFF] {
                var bytes = good
                bytes[i] ^= flip
                try check(bytes, "byte \(i) ^ \(flip)")
            }
        }
        for length in 0..<good.count { try check(Array(good.prefix(length)), "truncated to \(length)") }
        try check(good + [0], "one byte appended")
        try check(good + good, "the archive twice")
        #expect(undetected.isEmpty, "undetected: \(undetected.prefix(10)) of \(good.count) bytes")
    }

    @Test func aNewerFormatAndNonArchivesAreRefusedClearly() throws {
        var (directory, manifest) = try Self.tinyImage()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        manifest.formatVersion = 2
        let newer = directory + "/newer.bsnap"
        _ = try SnapshotArchive.write(manifest, from: directory, to: newer)
        #expect(throws: LogError.self) { try SnapshotArchive.readManifest(newer) }
        do {
            _ = try SnapshotArchive.readManifest(newer)
        } catch {
            #expect(error.message.contains("format 2, newer than this build reads (1)"))
        }
        let text = directory + "/a"
        do {
            _ = try SnapshotArchive.readManifest(text)
            Issue.record("a text file was read as an archive")
        } catch {
            #expect(error.message.contains("corrupt"))
        }
    }

    @Test func fileNamesCannotLeaveTheImageDirectory() {
        for name in ["", ".", "..", "../x", "a/b", ".hidden", "a\u{0}", "ü", String(repeating: "x", count: 256)] {
            #expect(!SnapshotArchive.isPlainFileName(name), "\(name)")
        }
        for name in ["000012.sst", "MANIFEST-000005", "CURRENT", "OPTIONS-000007", "IDENTITY", "000004.log"] {
            #expect(SnapshotArchive.isPlainFileName(name), "\(name)")
        }
    }

    static func export(_ store: EventStore, through: EventID) throws -> [UInt8] {
        var bytes: [UInt8] = []
        _ = try store.exportJSONL(through: through) { bytes += $0 }
        return bytes
    }

    /// A snapshot taken while appends run restores to a store equal to the source up to S.
    @Test func aSnapshotDuringIngestRestoresToTheSourceUpToS() async throws {
        let t = try await TempStore.make(genesis: true)
        defer { t.remove() }
        for round in 0..<20 {
            try await t.store.append((0..<50).map { i in
                AppendRequest(
                    type: i % 3 == 0 ? "build" : "test", parents: [t.store.lastID], key: "k-\(round)-\(i)", stream: "s\(i % 4)",
                    payload: .object([JSONMember(key: "i", value: .int(i))]))
            })
        }
        let before = t.store.lastID
        let store = t.store
        let writer = Task {
            var n = 0
            while !Task.isCancelled && n < 100_000 {
                try await store.append([AppendRequest(type: "during", parents: [1], key: "d\(n)")])
                n += 1
            }
        }
        let scratch = try TempDir.make("snapshots")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        // Appends before the snapshot, and after it: S must fall strictly between.
        var waits = 0  // bounded: a writer that died must fail the test, not hang it
        while t.store.lastID < before + 20, waits < 30_000 { try await Task.sleep(for: .milliseconds(1)); waits += 1 }
        let result = try t.store.snapshot(to: scratch + "/s.bsnap", createdBy: "test")
        let s = result.manifest.snapshotID
        while t.store.lastID <= s + 20, waits < 60_000 { try await Task.sleep(for: .milliseconds(1)); waits += 1 }
        writer.cancel()
        try await writer.value
        #expect(s > before && s < t.store.lastID)
        #expect(result.manifest.epochHistory == [.init(epoch: 1, firstID: 1)])
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch) == ["s.bsnap"], "no checkpoint or partial file left")

        let verified = try await EventStore.verifySnapshot(result.path, scratch: scratch)
        #expect(verified.report.ok && verified.report.events == s)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch) == ["s.bsnap"])

        let target = scratch + "/restored"
        let restored = try await EventStore.restore(result.path, into: target)
        #expect(restored.manifest == result.manifest)
        var options = StoreOptions()
        options.readOnly = true
        let copy = try await EventStore.open(at: target, options: options)
        defer { copy.close() }
        #expect(copy.lastID == s)
        #expect(try Self.export(copy, through: s) == Self.export(t.store, through: s))
        #expect(try copy.verify().ok)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).sorted() == ["restored", "s.bsnap"])
    }

    @Test func restoreRefusesANonEmptyDirectoryAndLeavesNothingOnFailure() async throws {
        let t = try await TempStore.make(genesis: true)
        defer { t.remove() }
        let scratch = try TempDir.make("restoreRefuses")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let archive = try t.store.snapshot(to: scratch + "/s.bsnap", createdBy: "test").path

        let occupied = scratch + "/occupied"
        try FileManager.default.createDirectory(atPath: occupied, withIntermediateDirectories: false)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: occupied + "/keep"))
        do {
            _ = try await EventStore.restore(archive, into: occupied)
            Issue.record("restored into a non-empty directory")
        } catch let error as LogError {
            #expect(error.message.contains("not empty") && error.field == "data_dir")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: occupied) == ["keep"])

        // A corrupted archive: refused, and neither the target nor a staging directory remains.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: archive)))
        bytes[bytes.count / 2] ^= 0x10
        let bad = scratch + "/bad.bsnap"
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        await #expect(throws: LogError.self) { _ = try await EventStore.restore(bad, into: scratch + "/fresh") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).sorted() == ["bad.bsnap", "occupied", "s.bsnap"])

        // An empty directory is fine.
        let empty = scratch + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: false)
        let result = try await EventStore.restore(archive, into: empty)
        #expect(result.report.ok && result.manifest.snapshotID == t.store.lastID)
    }

    /// On a real store's archive (tens of kilobytes) a seeded sample of positions: each corrupted
    /// byte is refused.
    @Test func corruptedBytesOfARealArchiveAreDetected() async throws {
        let t = try await TempStore.make(genesis: true)
        defer { t.remove() }
        try await t.store.append((0..<300).map { AppendRequest(type: "e", parents: [1], key: "k\($0)", payload: .string("payload \($0)")) })
        let scratch = try TempDir.make("realArchive")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let archive = try t.store.snapshot(to: scratch + "/s.bsnap", createdBy: "test").path
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: archive)))
        var random = SeededRandom(seed: SeededRandom.seed("corruptedBytesOfARealArchiveAreDetected"))
        let bad = scratch + "/bad.bsnap"
        var undetected: [Int] = []
        for _ in 0..<300 {
            var bytes = good
            let i = Int.random(in: 0..<bytes.count, using: &random)
            bytes[i] ^= UInt8.random(in: 1...255, using: &random)
            try Data(bytes).write(to: URL(fileURLWithPath: bad))
            if (try? SnapshotArchive.unpack(bad, into: nil)) != nil { undetected.append(i) }
        }
        #expect(undetected.isEmpty, "undetected positions \(undetected) of \(good.count)")
    }

    /// What a crash left (checkpoint hard links, a partial archive, a verify copy, a restore's
    /// staging directory) is removed once the process that made it is gone, and only then.
    @Test func leftoversOfDeadProcessesAreSwept() throws {
        let directory = try TempDir.make("sweep")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let dead: Int32 = 4_194_303  // above any pid this machine hands out
        let mine = getpid()
        let names = [
            ".checkpoint-\(dead)-1", ".snapshot-x.bsnap.partial-\(dead)-2", ".banyan-verify-\(dead)-3", "data.restoring-\(dead)",
            ".checkpoint-\(mine)-4", "data.restoring-\(mine)", "keep.bsnap", "notes.restoring-later",
        ]
        for name in names { try FileManager.default.createDirectory(atPath: "\(directory)/\(name)", withIntermediateDirectories: false) }
        let removed = EventStore.sweepLeftovers(in: directory)
        #expect(Set(removed) == Set(names.prefix(4)))
        #expect(try Set(FileManager.default.contentsOfDirectory(atPath: directory)) == Set(names.suffix(4)))
    }
}
