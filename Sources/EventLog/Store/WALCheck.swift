import Foundation
import Logging

/// A damaged write-ahead log found at open, and what it means in event ids.
public struct WALDamage: Sendable, Equatable, CustomStringConvertible {
    /// The WAL file (in the data directory) and the byte offset of the first damaged record.
    public var file: String
    public var offset: Int
    public var reason: String
    /// The last id recovery keeps: every record before the damage.
    public var recoverableThrough: EventID
    /// The highest id the WAL shows was written: by intact records after the damage, or by the
    /// damaged record itself when its ids continue the intact ones. At least `recoverableThrough`;
    /// the events in between are lost with the damage.
    public var writtenThrough: EventID

    public var lostCount: UInt64 { writtenThrough - recoverableThrough }

    public var description: String {
        var text = "the write-ahead log is damaged: \(file) at byte \(offset) (\(reason)); recovery keeps events up to id \(recoverableThrough)"
        if lostCount > 0 {
            text += ", but the log shows events up to id \(writtenThrough) were written: \(lostCount) acknowledged events (ids \(recoverableThrough + 1)...\(writtenThrough)) would be lost"
        } else {
            text += "; the damaged record may hold acknowledged events that no later record shows"
        }
        return text
    }
}

/// What `EventStore.open` does about a damaged write-ahead log.
public enum WALDamagePolicy: Sendable {
    /// Refuse to open (the default): acknowledged events must never vanish silently.
    case refuse
    /// Open the intact prefix. A writable open then appends a `banyan.lost` placeholder for each
    /// id the damage took (`WALDamage.writtenThrough`), so that no id is ever given to a second
    /// event; a read-only open (`verify`) only reports the damage.
    case accept
}

/// The note a writable `--accept-wal-loss` open leaves in the data directory before RocksDB
/// discards the damaged log, and removes once the lost ids hold placeholders. An open that finds
/// it (the previous one was interrupted) finishes the placeholders first.
struct WALLossNote: Codable, Equatable {
    var file: String
    var offset: Int
    var reason: String
    var recoveredThrough: EventID
    var writtenThrough: EventID

    static let fileName = "WAL_LOSS"

    static func load(_ directory: String) throws(LogError) -> WALLossNote? {
        let path = directory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(WALLossNote.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw LogError(.storage, "cannot read \(path), the note of an interrupted --accept-wal-loss: \(error)")
        }
    }

    /// Written to a temporary name, synced and renamed, so a crash leaves the old note or the new one.
    func save(_ directory: String) throws(LogError) {
        let path = directory + "/" + Self.fileName
        do {
            try Durable.write(try JSONEncoder().encode(self), to: path)
        } catch {
            throw LogError(.storage, "cannot write \(path): \(error)")
        }
    }

    static func remove(_ directory: String) throws(LogError) {
        do {
            try Durable.remove(directory + "/" + fileName)
        } catch {
            throw LogError(.storage, "cannot remove \(directory)/\(fileName): \(error)")
        }
    }

    var damage: WALDamage {
        WALDamage(file: file, offset: offset, reason: reason, recoverableThrough: recoveredThrough, writtenThrough: writtenThrough)
    }
}

/// Files written and removed durably: data synced, then the rename or unlink made durable by
/// syncing the directory.
enum Durable {
    static func write(_ data: Data, to path: String) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let written = data.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0 else { throw POSIXError(.EIO) }
        guard rename(temporary, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        try syncDirectory(of: path)
    }

    static func remove(_ path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        try syncDirectory(of: path)
    }

    private static func syncDirectory(of path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}

extension EventStore {
    /// The type of the placeholder events `--accept-wal-loss` writes for ids lost with a damaged WAL.
    public static let lostEventType = "banyan.lost"

    /// How an open goes after `checkWAL`: the damage accepted (if any), RocksDB's recovery mode,
    /// and the last sequence number of an intact WAL record, which RocksDB must reach.
    struct WALVerdict {
        var damage: WALDamage?
        var recovery: RocksDB.WALRecovery = .tolerateIncompleteTail
        var lastSequence: UInt64 = 0
        /// Said of an incomplete last record, which recovery drops.
        var note: String?
    }

    /// Reads the WAL files of an existing store before RocksDB replays them and decides how to
    /// open: damage is refused (`WALDamagePolicy.refuse`) with what it would cost in ids, or
    /// accepted with point-in-time recovery. An incomplete last record (a write cut short) is
    /// logged and left to RocksDB, which drops it.
    ///
    /// Writable opens and `verify` scan; other read-only opens (`get`, `query`, `export` beside a
    /// running server) change nothing and skip the read of the whole log: RocksDB refuses
    /// mid-log damage for them, and `explainOpenFailure` then says what the scan finds.
    static func checkWAL(_ path: String, options: StoreOptions, logger: Logger?) throws(LogError) -> WALVerdict {
        guard FileManager.default.fileExists(atPath: path + "/CURRENT") else { return WALVerdict() }
        guard !options.readOnly || options.walDamage == .accept else { return WALVerdict() }
        let scan = WALScanner.scan(directory: path)
        let note = scan.incompleteTail.map {
            "the write-ahead log \($0.file) ends in an incomplete record (\($0.bytes) bytes at byte \($0.offset)), which recovery drops: a write cut short by a crash"
        }
        if let tail = scan.incompleteTail {
            logger?.warning("write-ahead log ends in an incomplete record, which recovery drops: a write cut short by a crash (under --fsync group it was never acknowledged)", metadata: [
                "file": "\(tail.file)", "offset": "\(tail.offset)", "bytes": "\(tail.bytes)",
            ])
        }
        guard let found = scan.damage else { return WALVerdict(lastSequence: scan.lastSequence, note: note) }
        // What point-in-time recovery would keep, from a read-only open that changes nothing.
        let (kept, logFamily) = try storageCall { () throws(StorageError) -> (EventID, UInt32) in
            let probe = try LogStorage(path: path, readOnly: true, blockCacheBytes: 8 << 20, walRecovery: .pointInTime)
            defer { probe.close() }
            return (try probe.lastID(), probe.db.familyID(probe.cf(.log)))
        }
        let damage = WALDamage(
            file: found.file, offset: found.offset, reason: found.reason,
            recoverableThrough: kept, writtenThrough: max(kept, scan.highestKey[logFamily] ?? 0))
        guard options.walDamage == .accept else {
            throw LogError(.storage, "\(damage). Refusing to open. Restore the data directory from a backup, or open it with --accept-wal-loss to keep ids 1...\(damage.recoverableThrough) and mark the lost ids as lost events (docs/OPERATIONS.md, \"A damaged write-ahead log\")", cause: StorageError(.corruption, damage.description))
        }
        logger?.error("opening a store with a damaged write-ahead log (--accept-wal-loss)", metadata: ["damage": "\(damage)"])
        return WALVerdict(damage: damage, recovery: .pointInTime, note: note)
    }

    /// A read-only open that RocksDB refused: if the scan finds WAL damage, the error says so.
    static func explainOpenFailure(_ error: LogError, path: String) -> LogError {
        guard error.cause?.code == .corruption || error.message.contains("Corruption") else { return error }
        let scan = WALScanner.scan(directory: path)
        guard let found = scan.damage else { return error }
        return LogError(.storage, "the write-ahead log is damaged: \(found.file) at byte \(found.offset) (\(found.reason)); `banyan verify` says what it costs (docs/OPERATIONS.md, \"A damaged write-ahead log\")", cause: error.cause)
    }

    /// After a writable open: gives each id lost with a damaged WAL a `banyan.lost` placeholder,
    /// so no id ever names a second event, then removes the note. Resumes an interrupted run.
    func fillLostIDs(logger: Logger?) async throws {
        guard let note = try WALLossNote.load(path) else { return }
        var next = lastID + 1
        if next <= note.writtenThrough {
            logger?.warning("marking ids lost with a damaged write-ahead log", metadata: [
                "first": "\(next)", "last": "\(note.writtenThrough)", "file": "\(note.file)",
            ])
        }
        let payload = JSONValue.members([
            "wal": .string(note.file), "offset": .int(note.offset), "reason": .string(note.reason),
            "recovered_through": .int(note.recoveredThrough),
        ])
        while next <= note.writtenThrough {
            let count = Int(min(UInt64(limits.batchEventsMax), note.writtenThrough - next + 1))
            let batch = (0..<count).map { _ in
                AppendRequest(type: Self.lostEventType, message: "lost with a damaged write-ahead log", payload: payload)
            }
            try await append(batch, durability: .group)
            next = lastID + 1
        }
        try storageCall { () throws(StorageError) in try storage.db.flushAll() }
        try WALLossNote.remove(path)
    }
}
