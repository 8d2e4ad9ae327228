import Foundation
import Logging

/// What a snapshot run produced.
public struct SnapshotResult: Sendable {
    public let path: String
    public let manifest: SnapshotManifest
    /// Size of the archive (compressed).
    public let archiveBytes: UInt64
    /// How long the RocksDB checkpoint took (the only part that touches the live store).
    public let checkpointDuration: Duration
    public let duration: Duration

    /// The archive as a snapshot listing shows it.
    public var listing: SnapshotListing {
        SnapshotListing(name: URL(fileURLWithPath: path).lastPathComponent, archiveBytes: archiveBytes, manifest: manifest, error: nil)
    }
}

/// What verifying or restoring an archive found.
public struct RestoreResult: Sendable {
    public let manifest: SnapshotManifest
    public let report: VerifyReport
    public let duration: Duration
}

extension EventStore {
    /// Writes a consistent snapshot of the store to `archivePath` (which must not exist): a
    /// RocksDB checkpoint taken beside `archivePath` (hard links when on the data directory's file
    /// system), read back to learn S and the epoch history, packed into the archive, then
    /// removed. Appends go on meanwhile; the archive holds the events 1...S, S being the last
    /// group written before the checkpoint's flush. The archive appears under its name only when
    /// complete and fsynced; on failure nothing is left behind.
    /// `shouldStop` is asked per megabyte archived: when it says so (a shutdown), the run ends
    /// with `.closed` and leaves nothing behind.
    public func snapshot(
        to archivePath: String, createdBy: String, shouldStop: (() -> Bool)? = nil, progress: ((_ done: UInt64, _ total: UInt64) -> Void)? = nil
    ) throws(LogError) -> SnapshotResult {
        let started = ContinuousClock.now
        let target = URL(fileURLWithPath: archivePath)
        let directory = target.deletingLastPathComponent().path
        guard !FileManager.default.fileExists(atPath: archivePath) else {
            throw LogError(.invalidArgument, "\(archivePath) already exists; a snapshot never overwrites a file", field: "output")
        }
        Self.sweepLeftovers(in: directory)
        let unique = "\(getpid())-\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF)"
        let checkpoint = "\(directory)/.checkpoint-\(unique)"
        let partial = "\(directory)/.\(target.lastPathComponent).partial-\(unique)"
        defer {
            try? FileManager.default.removeItem(atPath: checkpoint)
            try? FileManager.default.removeItem(atPath: partial)
        }
        try storageCall { () throws(StorageError) in try storage.db.checkpoint(to: checkpoint) }
        let checkpointDuration = ContinuousClock.now - started
        let image = try Self.settleImage(checkpoint)
        let manifest = SnapshotManifest(
            snapshotID: image.lastID, firstID: image.firstID, epochHistory: image.meta.epochHistory.map { .init(epoch: $0.epoch, firstID: $0.firstID) },
            storeFormatVersion: StoreMeta.formatVersion, createdAt: Date().rfc3339(), createdBy: createdBy,
            files: try SnapshotArchive.describe(directory: checkpoint))
        let total = manifest.imageBytes
        let bytes = try SnapshotArchive.write(manifest, from: checkpoint, to: partial, shouldStop: shouldStop) { progress?($0, total) }
        // link() fails if the name exists (rename would replace it): never overwrite a file.
        guard link(partial, archivePath) == 0 else {
            throw LogError(.storage, "cannot move the snapshot into \(archivePath): \(String(cString: strerror(errno)))")
        }
        try SnapshotArchive.syncDirectory(directory)
        return SnapshotResult(path: archivePath, manifest: manifest, archiveBytes: bytes, checkpointDuration: checkpointDuration, duration: ContinuousClock.now - started)
    }

    /// Checks every checksum of an archive, unpacks it into a scratch directory under `scratch`,
    /// opens the image read-only and verifies it (`verify`), then removes the scratch copy.
    public static func verifySnapshot(_ archivePath: String, scratch: String, progress: ((_ done: UInt64, _ total: UInt64) -> Void)? = nil) async throws -> RestoreResult {
        sweepLeftovers(in: scratch)
        let staging = "\(scratch)/.banyan-verify-\(getpid())-\(UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF)"
        defer { try? FileManager.default.removeItem(atPath: staging) }
        return try await unpackAndCheck(archivePath, into: staging, progress: progress)
    }

    /// Restores an archive into `dataDir`, which must not exist or be empty: unpacks into a
    /// sibling staging directory, opens and verifies the image there, and only then renames it to
    /// `dataDir`. On any failure the staging directory is removed and `dataDir` is as it was.
    public static func restore(_ archivePath: String, into dataDir: String, progress: ((_ done: UInt64, _ total: UInt64) -> Void)? = nil) async throws -> RestoreResult {
        let target = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory)
        if exists {
            guard isDirectory.boolValue else { throw LogError(.invalidArgument, "\(dataDir) is a file; restore needs an empty or new directory", field: "data_dir") }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: target)) ?? ["?"]
            guard entries.isEmpty else {
                throw LogError(.invalidArgument, "\(dataDir) is not empty (\(entries.count) entries); restore only into an empty or new directory", field: "data_dir")
            }
        }
        sweepLeftovers(in: URL(fileURLWithPath: target).deletingLastPathComponent().path)
        let staging = "\(target).restoring-\(getpid())"
        var keep = false
        defer { if !keep { try? FileManager.default.removeItem(atPath: staging) } }
        try? FileManager.default.removeItem(atPath: staging)
        let result = try await unpackAndCheck(archivePath, into: staging, progress: progress)
        // rename() replaces an empty directory atomically, and fails on one that is no longer empty.
        guard rename(staging, target) == 0 else {
            throw LogError(.storage, "cannot move the restored store into \(dataDir): \(String(cString: strerror(errno)))")
        }
        keep = true
        try SnapshotArchive.syncDirectory(URL(fileURLWithPath: target).deletingLastPathComponent().path)
        return result
    }

    private static func unpackAndCheck(_ archivePath: String, into staging: String, progress: ((UInt64, UInt64) -> Void)?) async throws -> RestoreResult {
        let started = ContinuousClock.now
        let total = (try? SnapshotArchive.readManifest(archivePath).imageBytes) ?? 0
        do {
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
        } catch {
            throw LogError(.storage, "cannot create \(staging): \(error)")
        }
        let manifest = try SnapshotArchive.unpack(archivePath, into: staging) { progress?($0, total) }
        var options = StoreOptions()
        options.readOnly = true
        let store = try await EventStore.open(at: staging, options: options)
        defer { store.close() }
        let history = store.writerMeta.epochHistory.map { SnapshotManifest.EpochStart(epoch: $0.epoch, firstID: $0.firstID) }
        guard store.lastID == manifest.snapshotID, store.firstID == manifest.firstID, history == manifest.epochHistory else {
            throw LogError(
                .invalidArgument,
                "\(archivePath): the image holds events \(store.firstID)...\(store.lastID) in epochs \(history.map(\.epoch)), but its manifest says \(manifest.firstID)...\(manifest.snapshotID) in \(manifest.epochHistory.map(\.epoch))")
        }
        let report = try store.verify()
        guard report.ok else {
            throw LogError(.invalidArgument, "\(archivePath): the image fails verify: \(report.problemCount) problems, first: \(report.problems.first ?? "?")")
        }
        return RestoreResult(manifest: manifest, report: report, duration: ContinuousClock.now - started)
    }

    /// Settles a checkpoint and reads its S and meta. A checkpoint taken while writes go on
    /// holds the tail of the live WAL, and its MANIFEST tracks WALs; RocksDB's read-only open of
    /// such an image fails an assertion. So the image is opened once, writable (it is a private
    /// copy; its SSTs are hard links, which RocksDB never rewrites), flushed and closed like a
    /// store at a clean shutdown: what it holds is then all in SST files, and any open works.
    private static func settleImage(_ path: String) throws(LogError) -> (lastID: EventID, firstID: EventID, meta: StoreMeta) {
        try storageCall { () throws(StorageError) in
            let storage = try LogStorage(path: path, readOnly: false, blockCacheBytes: 1 << 20)
            defer { storage.close() }
            try storage.db.flushAll()
            let lastID = try storage.lastID()
            guard let meta = try StoreMeta.load(storage) else { throw StorageError(.corruption, "the checkpoint holds no store meta") }
            return (lastID, try PrunedPrefix.load(storage)?.firstID ?? 1, meta)
        }
    }

    /// Removes what a snapshot, verify or restore cut short by a crash left in `directory`: a
    /// checkpoint (hard links that would pin old SST files), a partial archive, a verify scratch
    /// copy, a restore's staging directory, each named with the process id that made it, and only
    /// when that process is gone. Returns the names removed.
    @discardableResult
    public static func sweepLeftovers(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var removed: [String] = []
        for name in names {
            let pidText: Substring
            if name.hasPrefix(".checkpoint-") || name.hasPrefix(".banyan-verify-") {
                pidText = name.split(separator: "-").dropFirst(name.hasPrefix(".checkpoint-") ? 1 : 2).first ?? ""
            } else if name.hasPrefix("."), let range = name.range(of: ".partial-") {
                pidText = name[range.upperBound...].split(separator: "-").first ?? ""
            } else if let range = name.range(of: ".restoring-") {
                pidText = name[range.upperBound...]
            } else {
                continue
            }
            guard let pid = Int32(pidText), pid > 0, kill(pid, 0) != 0, errno == ESRCH else { continue }
            if (try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")) != nil { removed.append(name) }
        }
        return removed
    }
}
