import EventLog
import Logging
import ServiceLifecycle

/// Runs a maintenance job every `every` (`--snapshot-every`) for as long as the server runs.
/// A run that finds another job running is skipped, not queued; a failure is logged (and
/// recorded by the job itself) and the schedule goes on.
struct MaintenanceSchedule: Service {
    let every: Duration
    let kind: String
    let logger: Logger
    let job: @Sendable () async throws -> Void

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: every)
                do {
                    try await job()
                } catch let busy as MaintenanceJobs.Busy {
                    logger.notice("scheduled job skipped: another runs", metadata: ["kind": "\(kind)", "running": "\(busy.running.id)"])
                } catch is CancellationError {
                    return
                } catch {
                    logger.error("scheduled job failed", metadata: ["kind": "\(kind)", "error": "\(error)"])
                }
            }
        }
        // Shutting down: a service that returns early would stop the server.
        try? await gracefulShutdown()
    }
}
