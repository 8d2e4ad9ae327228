import EventLog
import Foundation
import Logging

/// The server's snapshots (docs/OPERATIONS.md, "Backup and restore"): archives written under
/// the snapshot directory by `POST /v1/admin/snapshots` and `--snapshot-every`, listed, served
/// for download (a follower's bootstrap, `banyan snapshot --url`), and thinned to the newest
/// `keep` (never removing the one the store was pruned below). A run may also prune the store
/// below the snapshot it wrote, once that archive has been verified. Each run is a maintenance
/// job, recorded as `banyan.maintenance` events on a leader.
struct Snapshots: Sendable {
    let store: EventStore
    let directory: String
    let keep: Int
    let jobs: MaintenanceJobs
    let record: MaintenanceRecord
    let metrics: ServerMetrics
    let logger: Logger

        /// Names the server gives its own archives; retention only ever removes these.
    static let namePrefix = "snapshot-"

    /// Takes a snapshot now and, with `prune`, prunes the store below it; throws
    /// `MaintenanceJobs.Busy` when another job runs.
    func create(requestedBy: String, prune: Bool = false) async throws -> JSONValue {
        let job = try jobs.begin("snapshot", requestedBy: requestedBy)
        let started = ContinuousClock.now
        let startEvent = await record.started(job)
        jobs.update(job.id) { $0.startEvent = startEvent; $0.phase = "checkpoint" }
        do {
            let result = try await snapshot(job)
            let pruned = prune ? try await pruneBelow(result, job) : nil
            let removed = try await Blocking.run { [self] in removeOld() }
            let summary = JSONValue.members([
                "job": .string(job.id), "name": .string(result.listing.name),
                "snapshot_id": .int(result.manifest.snapshotID), "epoch": .int(result.manifest.epoch),
                "archive_bytes": .int(result.archiveBytes), "image_bytes": .int(result.manifest.imageBytes),
                "files": .int(result.manifest.files.count),
                "checkpoint_ms": .int(result.checkpointDuration.inMilliseconds), "duration_ms": .int(result.duration.inMilliseconds),
                "removed": .array(removed.map(JSONValue.string)), "pruned": pruned.map(Self.json) ?? .null,
            ])
            let finishEvent = await record.finished(job, after: startEvent, payload: summary)
            jobs.end(job.id, failed: false, result: summary)
            metrics.maintenanceJob(kind: job.kind, failed: false, duration: ContinuousClock.now - started)
            metrics.snapshotTaken(id: result.manifest.snapshotID, bytes: result.archiveBytes)
            logger.info("snapshot written", metadata: ["job": "\(job.id)", "path": "\(result.path)", "snapshot_id": "\(result.manifest.snapshotID)", "bytes": "\(result.archiveBytes)"])
            return .members([
                "job": .string(job.id), "snapshot": result.listing.json(),
                "checkpoint_ms": .int(result.checkpointDuration.inMilliseconds), "duration_ms": .int(result.duration.inMilliseconds),
                "removed": .array(removed.map(JSONValue.string)), "pruned": pruned.map(Self.json) ?? .null,
                "events": .members(["started": startEvent.map { .int($0) } ?? .null, "finished": finishEvent.map { .int($0) } ?? .null]),
            ])
        } catch {
            let reason = (error as? LogError)?.message ?? "\(error)"
            _ = await record.failed(job, after: startEvent, reason: reason)
            jobs.end(job.id, failed: true, result: .string(reason))
            metrics.maintenanceJob(kind: job.kind, failed: true, duration: ContinuousClock.now - started)
            logger.error("snapshot failed", metadata: ["job": "\(job.id)", "error": "\(reason)"])
            throw error
        }
    }

    private func snapshot(_ job: MaintenanceJobs.Job) async throws -> SnapshotResult {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw LogError(.storage, "cannot create the snapshot directory \(directory): \(error)")
        }
        let (store, jobs, directory) = (self.store, self.jobs, self.directory)
        return try await Blocking.runLong {
            let path = Self.freshPath(in: directory)
            var phase = "checkpoint"
            return try store.snapshot(to: path, createdBy: "banyan \(BanyanVersion.version)", shouldStop: { jobs.isStopping }) { done, total in
                // Called per megabyte: update the shared record only when something visible changes.
                if phase == "checkpoint" { phase = "archive" }
                jobs.update(job.id) { $0.phase = phase; $0.done = done; $0.total = total }
            }
        }
    }

    /// Verifies the archive just written (every checksum, then the image opened and checked),
    /// and only then prunes the store below it: a prune must never leave the only copy of what
    /// it removed in an archive that cannot be restored.
    private func pruneBelow(_ snapshot: SnapshotResult, _ job: MaintenanceJobs.Job) async throws -> PruneResult {
        jobs.update(job.id) { $0.phase = "verify"; $0.done = 0; $0.total = 0 }
        let (store, jobs, directory) = (self.store, self.jobs, self.directory)
        _ = try await EventStore.verifySnapshot(snapshot.path, scratch: directory) { done, total in
            jobs.update(job.id) { $0.done = done; $0.total = total }
        }
        jobs.update(job.id) { $0.phase = "prune"; $0.done = 0; $0.total = 0 }
        let name = snapshot.listing.name
        let result = try await Blocking.runLong { try store.prune(below: snapshot.manifest.snapshotID, snapshot: name) }
        metrics.pruned(result)
        logger.info("store pruned", metadata: [
            "job": "\(job.id)", "first_id": "\(result.firstID)", "events": "\(result.eventsRemoved)", "snapshot": "\(name)",
        ])
        return result
    }

    static func json(_ result: PruneResult) -> JSONValue {
        .members([
            "first_id": .int(result.firstID), "snapshot_id": .int(result.snapshotID), "snapshot": .string(result.snapshot),
            "events_removed": .int(result.eventsRemoved), "segments_removed": .int(result.segmentsRemoved),
            "bytes_before": .int(result.bytesBefore), "bytes_after": .int(result.bytesAfter),
            "note": result.note.map(JSONValue.string) ?? .null,
        ])
    }

    /// A name no archive has yet: the time to the millisecond, then a counter.
    private static func freshPath(in directory: String) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmssSSS'Z'"
        let base = "\(directory)/\(namePrefix)\(formatter.string(from: Date()))"
        var path = base + SnapshotArchive.fileExtension
        var n = 1
        while FileManager.default.fileExists(atPath: path) {
            n += 1
            path = "\(base)-\(n)\(SnapshotArchive.fileExtension)"
        }
        return path
    }

    /// Removes the server's own archives beyond the newest `keep`, except those the store was
    /// pruned below (together the only copy of the pruned events); returns their names.
    func removeOld() -> [String] {
        let own = SnapshotArchive.list(directory).map(\.name).filter { $0.hasPrefix(Self.namePrefix) }
        guard own.count > keep else { return [] }
        let pinned = Set(store.pruned?.archives.map(\.name) ?? [])
        var removed: [String] = []
        for name in own[keep...] where !pinned.contains(name) {
            do {
                try FileManager.default.removeItem(atPath: "\(directory)/\(name)")
                removed.append(name)
            } catch {
                logger.warning("cannot remove an old snapshot", metadata: ["name": "\(name)", "error": "\(error)"])
            }
        }
        return removed
    }

    /// Every archive in the directory, newest first.
    func list() -> [JSONValue] {
        SnapshotArchive.list(directory).map { $0.json() }
    }

    /// The path of the archive `name`, which must be a plain archive name in the directory.
    func path(of name: String) throws -> String {
        guard name.hasSuffix(SnapshotArchive.fileExtension), !name.hasPrefix("."), !name.contains("/"), name.utf8.count <= 255 else {
            throw APIError.invalid("a snapshot name is a file name ending in \(SnapshotArchive.fileExtension), as GET /v1/admin/snapshots lists them", field: "name")
        }
        let path = "\(directory)/\(name)"
        guard FileManager.default.fileExists(atPath: path) else {
            throw APIError(.notFound, "not found", detail: "no snapshot \(name) in the snapshot directory").naming("name")
        }
        return path
    }
}

/// Maintenance runs as events in the `banyan.maintenance` stream: `banyan.<kind>.started`, then
/// `banyan.<kind>.finished` or `.failed` with the started event as parent, so the history is a
/// query away. Only a node that takes writes records them; elsewhere (a follower) the job runs
/// unrecorded and its answer says so (`events` null).
struct MaintenanceRecord: Sendable {
    let store: EventStore
    let logger: Logger

    static let stream = "banyan.maintenance"

    func started(_ job: MaintenanceJobs.Job) async -> EventID? {
        await append("banyan.\(job.kind).started", parent: nil, payload: .members([
            "job": .string(job.id), "kind": .string(job.kind), "requested_by": .string(job.requestedBy),
        ]))
    }

    func finished(_ job: MaintenanceJobs.Job, after start: EventID?, payload: JSONValue) async -> EventID? {
        await append("banyan.\(job.kind).finished", parent: start, payload: payload)
    }

    func failed(_ job: MaintenanceJobs.Job, after start: EventID?, reason: String) async -> EventID? {
        await append("banyan.\(job.kind).failed", parent: start, payload: .members(["job": .string(job.id), "error": .string(reason)]))
    }

    private func append(_ type: String, parent: EventID?, payload: JSONValue) async -> EventID? {
        guard store.role == .leader else { return nil }
        do {
            let receipt = try await store.append([AppendRequest(type: type, parents: parent.map { [$0] } ?? [], stream: Self.stream, payload: payload)])
            return receipt.results.first?.id
        } catch {
            // The job's own outcome matters more than its record; a fenced leader cannot write.
            logger.warning("cannot record a maintenance event", metadata: ["type": "\(type)", "error": "\(error)"])
            return nil
        }
    }
}
