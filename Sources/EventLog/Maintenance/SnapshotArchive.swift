import Foundation

/// One file of a snapshot: its name in the image directory, size and CRC-32C.
public struct SnapshotFile: Sendable, Hashable {
    public var name: String
    public var size: UInt64
    public var crc32c: UInt32

    public init(name: String, size: UInt64, crc32c: UInt32) {
        self.name = name
        self.size = size
        self.crc32c = crc32c
    }
}

/// What a snapshot holds, written at the start of its archive (docs/STORAGE.md, "Snapshot
/// archives"). `snapshotID` is S: the image holds exactly the events `firstID...S` (`firstID` is 1
/// unless the store was pruned).
public struct SnapshotManifest: Sendable, Hashable {
    public var formatVersion: UInt32 = SnapshotArchive.formatVersion
    public var snapshotID: EventID
    /// The image's first id; written to the manifest only when it is not 1 (a pruned store).
    public var firstID: EventID = 1
    /// (epoch, first id of that epoch), ascending, as the store held them at S.
    public var epochHistory: [EpochStart]
    /// The store format of the image (`StoreMeta.formatVersion`).
    public var storeFormatVersion: UInt32
    /// RFC 3339, UTC, seconds.
    public var createdAt: String
    /// The program that wrote it, e.g. "banyan 0.1.0".
    public var createdBy: String
    public var files: [SnapshotFile]

    public struct EpochStart: Sendable, Hashable {
        public var epoch: UInt64
        public var firstID: EventID
        public init(epoch: UInt64, firstID: EventID) {
            self.epoch = epoch
            self.firstID = firstID
        }
    }

    public var epoch: UInt64 { epochHistory.last?.epoch ?? 0 }
    /// Bytes of the image's files, uncompressed.
    public var imageBytes: UInt64 { files.reduce(0) { $0 &+ $1.size } }

    public func json() -> JSONValue {
        var members: [JSONMember] = [JSONMember(key: "format_version", value: .int(formatVersion)), JSONMember(key: "snapshot_id", value: .int(snapshotID))]
        // Only a pruned store's image says where it starts, so archives of whole stores keep their bytes.
        if firstID > 1 { members.append(JSONMember(key: "first_id", value: .int(firstID))) }
        members += [
            JSONMember(key: "epoch", value: .int(epoch)),
            JSONMember(key: "epoch_history", value: .array(epochHistory.map { .members(["epoch": .int($0.epoch), "first_id": .int($0.firstID)]) })),
            JSONMember(key: "store_format_version", value: .int(storeFormatVersion)),
            JSONMember(key: "created_at", value: .string(createdAt)),
            JSONMember(key: "created_by", value: .string(createdBy)),
            JSONMember(key: "files", value: .array(files.map { .members(["name": .string($0.name), "size": .int($0.size), "crc32c": .int($0.crc32c)]) })),
        ]
        return .object(members)
    }

    /// Parses and checks a manifest: known fields of the right types, file names that stay
    /// inside the image directory, at most `SnapshotArchive.filesMax` files.
    static func parse(_ bytes: [UInt8], path: String) throws(LogError) -> SnapshotManifest {
        func bad(_ why: String) -> LogError { LogError(.invalidArgument, "\(path): the manifest is malformed: \(why)") }
        let value: JSONValue
        do { value = try JSONParser.parse(bytes, depthMax: 8) } catch { throw bad("\(error)") }
        func uint(_ v: JSONValue?, _ name: String) throws(LogError) -> UInt64 {
            guard let n = v?.uint64Value else { throw bad("\(name) must be an unsigned integer") }
            return n
        }
        func string(_ v: JSONValue?, _ name: String) throws(LogError) -> String {
            guard let s = v?.stringValue else { throw bad("\(name) must be a string") }
            return s
        }
        func u32(_ v: JSONValue?, _ name: String) throws(LogError) -> UInt32 {
            let n = try uint(v, name)
            guard n <= UInt32.max else { throw bad("\(name) is out of range") }
            return UInt32(n)
        }
        guard let history = value["epoch_history"]?.arrayValue, !history.isEmpty else { throw bad("epoch_history must be a non-empty array") }
        guard let files = value["files"]?.arrayValue else { throw bad("files must be an array") }
        guard files.count <= SnapshotArchive.filesMax else { throw bad("\(files.count) files, more than \(SnapshotArchive.filesMax)") }
        var epochs: [EpochStart] = []
        for entry in history {
            epochs.append(EpochStart(epoch: try uint(entry["epoch"], "epoch_history.epoch"), firstID: try uint(entry["first_id"], "epoch_history.first_id")))
        }
        var entries: [SnapshotFile] = []
        var names = Set<String>()
        for entry in files {
            let name = try string(entry["name"], "files.name")
            guard SnapshotArchive.isPlainFileName(name) else { throw bad("file name \"\(name)\" is not a plain file name") }
            guard names.insert(name).inserted else { throw bad("file \(name) is listed twice") }
            entries.append(SnapshotFile(name: name, size: try uint(entry["size"], "files.size"), crc32c: try u32(entry["crc32c"], "files.crc32c")))
        }
        var total: UInt64 = 0
        for file in entries {
            guard file.size <= SnapshotArchive.imageBytesMax - total else {
                throw bad("the files add up to more than \(SnapshotArchive.imageBytesMax) bytes")
            }
            total += file.size
        }
        let snapshotID = try uint(value["snapshot_id"], "snapshot_id")
        var firstID: EventID = 1
        if let first = value["first_id"] {
            firstID = try uint(first, "first_id")
            guard firstID >= 2, firstID <= snapshotID else { throw bad("first_id must be 2...snapshot_id") }
        }
        let manifest = SnapshotManifest(
            formatVersion: try u32(value["format_version"], "format_version"),
            snapshotID: snapshotID, firstID: firstID,
            epochHistory: epochs,
            storeFormatVersion: try u32(value["store_format_version"], "store_format_version"),
            createdAt: try string(value["created_at"], "created_at"),
            createdBy: try string(value["created_by"], "created_by"),
            files: entries)
        guard try uint(value["epoch"], "epoch") == manifest.epoch else { throw bad("epoch is not the last of epoch_history") }
        return manifest
    }
}

/// The snapshot archive: one zstd frame (with its content checksum) holding
///
///     "BANYANSS" | format version u32be | manifest length u32be | manifest (JSON)
///     | CRC-32C of the manifest u32be | each file's bytes, in manifest order | "BANYANSE"
///
/// The manifest comes first so that listing reads a few kilobytes; its own checksum lets a
/// reader trust it before the frame's checksum is reached at the end. Each file is checked
/// against the manifest's CRC-32C as it is unpacked, and the frame's XXH64 covers every byte.
/// Pinned byte for byte by `SnapshotArchiveTests`.
public enum SnapshotArchive {
    public static let formatVersion: UInt32 = 1
    static let startMagic = Array("BANYANSS".utf8)
    static let endMagic = Array("BANYANSE".utf8)
    /// Bounds on what an archive may claim, so a hostile one cannot make a reader allocate or loop
    /// without end.
    static let manifestBytesMax = 16 << 20
    static let filesMax = 100_000
    /// The most an image may hold (16 TiB); unpacking also checks the free space first.
    static let imageBytesMax: UInt64 = 16 << 40
    static let fileNameBytesMax = 255
    /// zstd level: SST files are already compressed (LZ4, zstd at the bottom level), so a higher
    /// level buys little and costs the CPU that ingestion needs while a snapshot runs.
    public static let compressionLevel: Int32 = 1
    private static let chunkBytes = 1 << 20

    /// RocksDB's file names (000012.sst, MANIFEST-000005, CURRENT, ...): no separators, no dot
    /// names, so unpacking can never leave the target directory.
    static func isPlainFileName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= fileNameBytesMax, bytes[0] != UInt8(ascii: ".") else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
        }
    }

    /// What an image leaves out: the lock file and RocksDB's info logs, which every open recreates.
    static func isLeftOut(_ name: String) -> Bool {
        name == "LOCK" || name == "LOG" || name.hasPrefix("LOG.old.")
    }

    /// The files of `directory` (regular files only; a subdirectory is an error), sorted by name,
    /// with sizes and checksums, less those left out.
    static func describe(directory: String) throws(LogError) -> [SnapshotFile] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { !isLeftOut($0) }.sorted() } catch {
            throw LogError(.storage, "cannot list \(directory): \(error)")
        }
        var files: [SnapshotFile] = []
        for name in names {
            guard isPlainFileName(name) else { throw LogError(.storage, "\(directory)/\(name): not a file a snapshot can hold") }
            var crc: UInt32 = 0
            let size = try readFile("\(directory)/\(name)") { chunk in crc = CRC32C.update(crc, chunk) }
            files.append(SnapshotFile(name: name, size: size, crc32c: crc))
        }
        return files
    }

    /// Writes the archive of `directory` (whose files `manifest.files` describes) to `path`,
    /// which must not exist. The caller renames it into place. Returns its size.
    static func write(
        _ manifest: SnapshotManifest, from directory: String, to path: String, shouldStop: (() -> Bool)? = nil, progress: ((UInt64) -> Void)? = nil
    ) throws(LogError) -> UInt64 {
        // The reader's bounds, checked here too: an archive it would refuse is not a backup.
        guard manifest.files.count <= filesMax, manifest.imageBytes <= imageBytesMax else {
            throw LogError(.storage, "the image has \(manifest.files.count) files of \(manifest.imageBytes) bytes, more than an archive holds (\(filesMax) files, \(imageBytesMax) bytes)")
        }
        let writer = try ZstdFileWriter(path: path, level: compressionLevel)
        var header = ByteWriter(capacity: 1024)
        header.bytes += startMagic
        header.putBE32(manifest.formatVersion)
        var json = JSONWriter()
        json.write(manifest.json())
        guard json.bytes.count <= manifestBytesMax else { throw LogError(.storage, "the manifest is \(json.bytes.count) bytes, more than \(manifestBytesMax)") }
        header.putBE32(UInt32(json.bytes.count))
        header.bytes += json.bytes
        header.putBE32(CRC32C.checksum(json.bytes))
        try writer.write(header.bytes)
        var done: UInt64 = 0
        for file in manifest.files {
            var crc: UInt32 = 0
            let size = try readFile("\(directory)/\(file.name)") { (chunk) throws(LogError) in
                if shouldStop?() == true { throw LogError(.closed, "the snapshot was stopped by shutdown") }
                crc = CRC32C.update(crc, chunk)
                try writer.write(chunk)
                done += UInt64(chunk.count)
                progress?(done)
            }
            // RocksDB never rewrites a live file, so a change here is a fault, not a race.
            guard size == file.size, crc == file.crc32c else {
                throw LogError(.storage, "\(directory)/\(file.name) changed while it was archived")
            }
        }
        try writer.write(endMagic)
        try writer.finish()
        return writer.bytesWritten
    }

    /// Reads an archive's header and manifest only (listing). The manifest's checksum is checked;
    /// the files are not.
    public static func readManifest(_ path: String) throws(LogError) -> SnapshotManifest {
        try readManifest(ZstdFileReader(path: path))
    }

    private static func readManifest(_ reader: ZstdFileReader) throws(LogError) -> SnapshotManifest {
        let path = reader.path
        guard try reader.read(startMagic.count) == startMagic else {
            throw LogError(.invalidArgument, "\(path) is not a Banyan snapshot archive (its content does not start with BANYANSS)")
        }
        var r = ByteReader(try reader.read(8))
        let version = try decoded { () throws(StorageError) in try r.be32() }
        guard version <= formatVersion else {
            throw LogError(.invalidArgument, "\(path) is a snapshot archive of format \(version), newer than this build reads (\(formatVersion)); use a newer banyan")
        }
        guard version == formatVersion else { throw LogError(.invalidArgument, "\(path): unknown snapshot archive format \(version)") }
        let length = Int(try decoded { () throws(StorageError) in try r.be32() })
        guard length <= manifestBytesMax else {
            throw LogError(.invalidArgument, "\(path) is corrupt: its manifest claims \(length) bytes, more than \(manifestBytesMax)")
        }
        let json = try reader.read(length)
        var cr = ByteReader(try reader.read(4))
        guard try decoded({ () throws(StorageError) in try cr.be32() }) == CRC32C.checksum(json) else {
            throw LogError(.invalidArgument, "\(path) is corrupt: the manifest's checksum does not match")
        }
        let manifest = try SnapshotManifest.parse(json, path: path)
        guard manifest.formatVersion == version else { throw LogError(.invalidArgument, "\(path) is corrupt: the manifest's format version differs from the header's") }
        return manifest
    }

    /// Reads the whole archive, checking every checksum, and writes its files into `directory`
    /// (which must exist and be empty) when one is given, each fsynced, then the directory.
    /// Returns the manifest.
    static func unpack(_ path: String, into directory: String?, progress: ((UInt64) -> Void)? = nil) throws(LogError) -> SnapshotManifest {
        let reader = try ZstdFileReader(path: path)
        let manifest = try readManifest(reader)
        if let directory {
            // What the manifest claims must fit before a byte is written (a hostile archive of
            // repeated bytes expands by thousands).
            var fs = statvfs()
            if statvfs(directory, &fs) == 0 {
                let free = UInt64(fs.f_bavail) &* UInt64(fs.f_frsize)
                guard manifest.imageBytes <= free else {
                    throw LogError(.storage, "\(path) unpacks to \(manifest.imageBytes) bytes, more than the \(free) free in \(directory)")
                }
            }
        }
        var done: UInt64 = 0
        for file in manifest.files {
            var crc: UInt32 = 0
            let output = try directory.map { (dir) throws(LogError) in try OutputFile(path: "\(dir)/\(file.name)") }
            try reader.read(file.size) { (chunk) throws(LogError) in
                crc = CRC32C.update(crc, chunk)
                try output?.write(chunk)
                done += UInt64(chunk.count)
                progress?(done)
            }
            guard crc == file.crc32c else {
                throw LogError(.invalidArgument, "\(path) is corrupt: \(file.name) does not match its checksum")
            }
            try output?.close()
        }
        guard try reader.read(endMagic.count) == endMagic else {
            throw LogError(.invalidArgument, "\(path) is corrupt: the end marker is missing after the last file")
        }
        try reader.expectEnd()
        if let directory { try syncDirectory(directory) }
        return manifest
    }

    /// Reads a file in chunks; returns its size.
    @discardableResult
    static func readFile(_ path: String, _ body: (UnsafeRawBufferPointer) throws(LogError) -> Void) throws(LogError) -> UInt64 {
        guard let file = fopen(path, "rb") else { throw LogError(.storage, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: chunkBytes)
        var total: UInt64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n == 0 {
                if ferror(file) != 0 { throw LogError(.storage, "cannot read \(path): \(String(cString: strerror(errno)))") }
                return total
            }
            try buffer.withUnsafeBytes { raw in Result { () throws(LogError) in try body(UnsafeRawBufferPointer(rebasing: raw[0..<n])) } }.get()
            total += UInt64(n)
        }
    }

    static func syncDirectory(_ path: String) throws(LogError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw LogError(.storage, "cannot open directory \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw LogError(.storage, "cannot sync directory \(path): \(String(cString: strerror(errno)))") }
    }

    private static func decoded<T>(_ body: () throws(StorageError) -> T) throws(LogError) -> T {
        do { return try body() } catch { throw LogError(.invalidArgument, "snapshot archive: \(error.message)") }
    }

    /// A new file written in chunks and fsynced at `close()`.
    private final class OutputFile {
        let path: String
        private let file: UnsafeMutablePointer<FILE>
        private var closed = false

        init(path: String) throws(LogError) {
            guard let file = fopen(path, "wbx") else { throw LogError(.storage, "cannot create \(path): \(String(cString: strerror(errno)))") }
            self.path = path
            self.file = file
        }

        deinit { if !closed { fclose(file) } }

        func write(_ chunk: UnsafeRawBufferPointer) throws(LogError) {
            guard !chunk.isEmpty else { return }
            guard fwrite(chunk.baseAddress, 1, chunk.count, file) == chunk.count else {
                throw LogError(.storage, "cannot write \(path): \(String(cString: strerror(errno)))")
            }
        }

        func close() throws(LogError) {
            closed = true
            let ok = fflush(file) == 0 && fsync(fileno(file)) == 0
            let reason = String(cString: strerror(errno))
            guard fclose(file) == 0, ok else { throw LogError(.storage, "cannot write \(path): \(reason)") }
        }
    }
}

/// One archive in a snapshot directory, as `banyan snapshot list` and `GET /v1/admin/snapshots`
/// show it: from its manifest, or the reason it cannot be read.
public struct SnapshotListing: Sendable {
    public let name: String
    public let archiveBytes: UInt64
    public let manifest: SnapshotManifest?
    public let error: String?

    public func json() -> JSONValue {
        guard let manifest else {
            return .members(["name": .string(name), "archive_bytes": .int(archiveBytes), "error": .string(error ?? "unreadable")])
        }
        return .members([
            "name": .string(name), "snapshot_id": .int(manifest.snapshotID), "first_id": .int(manifest.firstID), "epoch": .int(manifest.epoch),
            "created_at": .string(manifest.createdAt), "created_by": .string(manifest.createdBy),
            "format_version": .int(manifest.formatVersion), "archive_bytes": .int(archiveBytes), "image_bytes": .int(manifest.imageBytes),
            "files": .int(manifest.files.count),
        ])
    }
}

extension SnapshotArchive {
    /// The extension of archive names.
    public static let fileExtension = ".bsnap"

    /// The archives in `directory` (names ending in `.bsnap`, not starting with a dot), by name
    /// descending: the server's own names start with their UTC time, so newest first.
    public static func list(_ directory: String) -> [SnapshotListing] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(fileExtension) && !$0.hasPrefix(".") }
        return names.sorted(by: >).map { name in
            let path = "\(directory)/\(name)"
            let bytes = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
            do throws(LogError) {
                return SnapshotListing(name: name, archiveBytes: bytes, manifest: try readManifest(path), error: nil)
            } catch {
                return SnapshotListing(name: name, archiveBytes: bytes, manifest: nil, error: error.message)
            }
        }
    }
}
