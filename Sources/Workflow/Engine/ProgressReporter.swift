import Synchronization

/// Records an attempt's progress reports as `workflow.task.progress` events, in the order made,
/// while the attempt runs: reports come from any thread (a pipe's reader), one task records them,
/// started at the first report (most attempts make none, and cost nothing here). At most
/// `Engine.progressEventsMax` per attempt; `finish` waits until every report made is recorded,
/// so they all come before the attempt's outcome.
final class ProgressReporter: Sendable {
    private struct Recording {
        var reports: AsyncStream<WorkflowValue>.Continuation
        var recorder: Task<Void, any Error>
    }

    private let recording = Mutex<Recording?>(nil)
    private let engine: Engine
    private let id: RunEvents.RunID
    private let task: String
    private let attempt: Int

    init(engine: Engine, id: RunEvents.RunID, task: String, attempt: Int) {
        self.engine = engine
        self.id = id
        self.task = task
        self.attempt = attempt
    }

    func report(_ value: WorkflowValue) {
        recording.withLock { r in
            if r == nil {
                let (stream, continuation) = AsyncStream<WorkflowValue>.makeStream(bufferingPolicy: .bufferingOldest(Engine.progressEventsMax))
                let (engine, id, task, attempt) = (self.engine, self.id, self.task, self.attempt)
                let recorder = Task {
                    var sequence = 0
                    for await value in stream where sequence < Engine.progressEventsMax {
                        sequence += 1
                        try await engine.record([RunEvents.progress(id, task, attempt: attempt, sequence: sequence, value: value)])
                    }
                }
                r = Recording(reports: continuation, recorder: recorder)
            }
            r?.reports.yield(value)
        }
    }

    func finish() async throws {
        guard let r = recording.withLock({ r -> Recording? in
            defer { r = nil }
            return r
        }) else { return }
        r.reports.finish()
        try await r.recorder.value
    }
}
