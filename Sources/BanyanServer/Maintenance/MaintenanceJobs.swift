import EventLog
import Foundation
import Synchronization

/// The maintenance jobs of one server (snapshots; compaction and prune later): one runs at a
/// time, a second is refused with the running one (409), and the last `recentMax` outcomes are
/// kept for `GET /v1/admin/jobs`. Thread-safe: everything is behind one `Mutex`.
final class MaintenanceJobs: Sendable {
    struct Job: Sendable {
        let id: String
        let kind: String
        let requestedBy: String
        let startedAt: Date
        var phase = "starting"
        /// Progress: `done` of `total` `unit`s (bytes for a snapshot, ids for a compaction).
        var done: UInt64 = 0
        var total: UInt64 = 0
        var unit = "bytes"
        /// The `banyan.maintenance` event that recorded the start, when this node records them.
        var startEvent: EventID?

        func json() -> JSONValue {
            .members([
                "id": .string(id), "kind": .string(kind), "state": .string("running"), "requested_by": .string(requestedBy),
                "started_at": .string(startedAt.rfc3339(milliseconds: true)), "phase": .string(phase),
                "done": .int(done), "total": .int(total), "unit": .string(unit),
                "start_event": startEvent.map { .int($0) } ?? .null,
            ])
        }
    }

    struct Outcome: Sendable {
        let job: Job
        let failed: Bool
        let finishedAt: Date
        /// What the job produced (success) or why it failed.
        let result: JSONValue

        func json() -> JSONValue {
            .members([
                "id": .string(job.id), "kind": .string(job.kind), "state": .string(failed ? "failed" : "finished"),
                "requested_by": .string(job.requestedBy), "started_at": .string(job.startedAt.rfc3339(milliseconds: true)),
                "finished_at": .string(finishedAt.rfc3339(milliseconds: true)),
                "duration_ms": .int(Int((finishedAt.timeIntervalSince(job.startedAt) * 1000).rounded())),
                failed ? "error" : "result": result,
            ])
        }
    }

    /// A job was asked for while another runs.
    struct Busy: Error, Sendable {
        let running: Job
    }

    static let recentMax = 20
    private let state = Mutex<(running: Job?, recent: [Outcome], sequence: UInt64)>((nil, [], 0))
    /// Set when the server shuts down: a running job ends at its next check (a compaction keeps
    /// its progress mark and resumes at the next start), and no new one begins.
    private let stopping = Atomic(false)

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    func requestStop() {
        stopping.store(true, ordering: .releasing)
    }

    /// Starts a job of `kind`, or throws `Busy` with the one running.
    func begin(_ kind: String, requestedBy: String) throws(Busy) -> Job {
        let now = Date()
        let result: Result<Job, Busy> = state.withLock { state in
            if let running = state.running { return .failure(Busy(running: running)) }
            if stopping.load(ordering: .acquiring) {
                return .failure(Busy(running: Job(id: "shutdown", kind: "shutdown", requestedBy: "server", startedAt: now)))
            }
            state.sequence += 1
            let job = Job(id: "\(kind)-\(Int64(now.timeIntervalSince1970 * 1000))-\(state.sequence)", kind: kind, requestedBy: requestedBy, startedAt: now)
            state.running = job
            return .success(job)
        }
        return try result.get()
    }

    func update(_ id: String, _ change: (inout Job) -> Void) {
        state.withLock { state in
            guard var job = state.running, job.id == id else { return }
            change(&job)
            state.running = job
        }
    }

    func running(_ id: String) -> Job? {
        state.withLock { $0.running?.id == id ? $0.running : nil }
    }

    func end(_ id: String, failed: Bool, result: JSONValue) {
        state.withLock { state in
            guard let job = state.running, job.id == id else { return }
            state.running = nil
            state.recent.insert(Outcome(job: job, failed: failed, finishedAt: Date(), result: result), at: 0)
            if state.recent.count > Self.recentMax { state.recent.removeLast() }
        }
    }

    func json() -> JSONValue {
        let (running, recent) = state.withLock { ($0.running, $0.recent) }
        return .members(["running": running?.json() ?? .null, "recent": .array(recent.map { $0.json() })])
    }
}
