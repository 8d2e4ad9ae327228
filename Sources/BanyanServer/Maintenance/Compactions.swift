import EventLog
import Foundation
import Logging

/// Compaction as a maintenance job (docs/OPERATIONS.md, Compaction). On the leader a request
/// appends the control event `banyan.compaction.started` (its payload holds the spec) and then
/// carries it out; every follower carries out the same control event when it has applied it
/// (`run(control:spec:)` from `MaintenanceWorker`), and so does a leader that restarts with one
/// unfinished. The leader records `banyan.compaction.finished` (or `.failed`) after its run.
struct Compactions: Sendable {
    let store: EventStore
    let jobs: MaintenanceJobs
    let record: MaintenanceRecord
    let replication: ReplicationState
    let metrics: ServerMetrics
    let logger: Logger

    /// What a request asks for: one horizon, and optionally a stream and a type.
    struct Request: Sendable {
        var before: EventID?
        var olderThan: Duration?
        var stream: String?
        var type: String?

        /// The spec at this moment: `through` is the last id now, `older_than` becomes a time.
        func spec(lastID: EventID, now: Int64 = StoreOptions.wallClockNanos()) -> CompactionSpec {
            CompactionSpec(
                before: before, olderThanUnixNano: olderThan.map { now - Int64($0.inMilliseconds) * 1_000_000 }, through: lastID, stream: stream, type: type)
        }
    }

    /// Starts and carries out a compaction on the leader; throws `MaintenanceJobs.Busy` when
    /// another job runs.
    func create(_ request: Request, requestedBy: String) async throws -> JSONValue {
        guard replication.role == .leader else {
            throw APIError(.conflict, "not the leader", detail: "ask the leader (\(replication.leader ?? "unknown")) to compact; followers carry out what it asks")
        }
        if let before = request.before, before > store.lastID + 1 {
            throw APIError.invalid("before is \(before), above the last id + 1 (\(store.lastID + 1)): nothing at or above it exists yet", field: "before")
        }
        let job = try jobs.begin("compaction", requestedBy: requestedBy)
        let spec = request.spec(lastID: store.lastID)
        let control: EventID
        do {
            let receipt = try await store.append([
                AppendRequest(
                    type: EventStore.compactionEventType, stream: MaintenanceRecord.stream,
                    payload: .members(["job": .string(job.id), "kind": .string(job.kind), "requested_by": .string(requestedBy), "spec": spec.json()]))
            ])
            control = receipt.results[0].id
        } catch {
            jobs.end(job.id, failed: true, result: .string("\(error)"))
            throw error
        }
        jobs.update(job.id) { $0.startEvent = control }
        return try await carryOut(job, control: control, spec: spec)
    }

    /// Carries out a control event found in the log (a follower, or a leader resuming one).
    /// `recordFailure`: append `banyan.compaction.failed` if it fails (the worker records only a
    /// control event's first failure).
    func run(control: EventID, spec: CompactionSpec, requestedBy: String, recordFailure: Bool = true) async throws {
        let job = try jobs.begin("compaction", requestedBy: requestedBy)
        jobs.update(job.id) { $0.startEvent = control }
        _ = try await carryOut(job, control: control, spec: spec, recordFailure: recordFailure)
    }

    private func carryOut(_ job: MaintenanceJobs.Job, control: EventID, spec: CompactionSpec, recordFailure: Bool = true) async throws -> JSONValue {
        let started = ContinuousClock.now
        jobs.update(job.id) { $0.phase = "rewrite"; $0.unit = "ids" }
        let (store, jobs) = (self.store, self.jobs)
        do {
            let result = try await Blocking.runLong {
                try store.compact(spec, control: control, shouldStop: { jobs.isStopping }) { done, last in
                    jobs.update(job.id) { $0.done = done; $0.total = last }
                }
            }
            let summary = JSONValue.object(
                [JSONMember(key: "job", value: .string(job.id)), JSONMember(key: "control", value: .int(control)), JSONMember(key: "spec", value: spec.json())]
                    + (result.json().objectValue ?? []))
            let finished = await record.finished(job, after: control, payload: summary)
            jobs.end(job.id, failed: false, result: summary)
            metrics.maintenanceJob(kind: job.kind, failed: false, duration: ContinuousClock.now - started)
            metrics.compacted(result)
            logger.info("compaction done", metadata: ["job": "\(job.id)", "control": "\(control)", "compacted": "\(result.compacted)", "reclaimed": "\(result.bytesReclaimed)"])
            return .object((summary.objectValue ?? []) + [JSONMember(key: "events", value: .members(["started": .int(control), "finished": finished.map { .int($0) } ?? .null]))])
        } catch {
            let reason = (error as? LogError)?.message ?? "\(error)"
            if recordFailure { _ = await record.failed(job, after: control, reason: reason) }
            jobs.end(job.id, failed: true, result: .string(reason))
            metrics.maintenanceJob(kind: job.kind, failed: true, duration: ContinuousClock.now - started)
            logger.error("compaction failed", metadata: ["job": "\(job.id)", "control": "\(control)", "error": "\(reason)"])
            throw error
        }
    }
}
