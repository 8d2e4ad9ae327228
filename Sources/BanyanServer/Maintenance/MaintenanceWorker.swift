import EventLog
import Logging
import ServiceLifecycle

/// Carries out the compactions the log asks for (`EventStore.pendingCompactions`) on every node:
/// a follower once it has applied a `banyan.compaction.started` event, a leader that restarted
/// with one unfinished (it then resumes from the run's progress mark). Wakes on a commit, at most
/// once per `scanPause` (waking on every commit group cost a timer task, its cancellation and
/// several futex calls each: about a tenth of a busy server's CPU under single-event `/emit`s), and
/// at least once per `interval` + `scanPause`; while another job runs it pauses for `interval`. A run that
/// fails is retried after a pause that doubles each time up to `backoffMax`, and only its first
/// failure is recorded as an event, so a compaction that cannot succeed does not flood the log.
struct MaintenanceWorker: Service {
    let store: EventStore
    let compactions: Compactions
    let logger: Logger
    var interval: Duration = .seconds(2)
    var scanPause: Duration = .milliseconds(250)
    static let backoffMax: Duration = .seconds(600)

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var seen = store.compactionDone
            var truncations = store.truncation(since: 0).count
            var failures = 0
            while !Task.isCancelled {
                // A truncation may cut ids already looked at; new control events can take them.
                let (count, cut) = store.truncation(since: truncations)
                truncations = count
                if let cut { seen = min(seen, cut) }
                let upTo = store.lastID
                do {
                    try await carryOutPending(after: seen, recordFailure: failures == 0)
                    seen = upTo
                    failures = 0
                    _ = await store.notifier.wait(after: store.lastID, timeout: interval)
                    try await Task.sleep(for: scanPause)
                } catch is MaintenanceJobs.Busy {
                    // Another job runs (on a leader, often the very compaction found pending):
                    // look again after a pause, not at every commit, which would rescan the
                    // same ids hundreds of times a second.
                    try await Task.sleep(for: interval)
                } catch is CancellationError {
                    return
                } catch {
                    failures += 1
                    let pause = min(Self.backoffMax, interval * (1 << min(failures - 1, 10)))
                    logger.error("a pending compaction failed; retrying after a pause", metadata: ["error": "\(error)", "failures": "\(failures)", "pause_s": "\(pause.inSeconds)"])
                    try await Task.sleep(for: pause)
                }
            }
        }
        // Shutting down (or cancelled): a running snapshot or compaction ends at its next check
        // instead of holding the shutdown for its whole length.
        compactions.jobs.requestStop()
        try? await gracefulShutdown()
    }

    private func carryOutPending(after: EventID, recordFailure: Bool) async throws {
        for (control, spec) in try store.pendingCompactions(after: after) {
            guard let spec else {
                logger.error("a compaction control event has no spec this build reads; skipped", metadata: ["control": "\(control)"])
                try store.skipCompaction(control: control)
                continue
            }
            logger.notice("carrying out a compaction from the log", metadata: ["control": "\(control)"])
            try await compactions.run(control: control, spec: spec, requestedBy: "log", recordFailure: recordFailure)
        }
    }
}
