/// Records an attempt's progress reports as `workflow.task.progress` events, in the order made,
/// while the attempt runs: reports come from any thread (a pipe's reader), one task records them.
/// At most `Engine.progressEventsMax` per attempt; `finish` waits until every report made is
/// recorded, so they all come before the attempt's outcome.
final class ProgressReporter: Sendable {
    private let reports: AsyncStream<WorkflowValue>.Continuation
    private let recorder: Task<Void, any Error>

    init(engine: Engine, id: RunEvents.RunID, task: String, attempt: Int) {
        let (stream, continuation) = AsyncStream<WorkflowValue>.makeStream(bufferingPolicy: .bufferingOldest(Engine.progressEventsMax))
        reports = continuation
        recorder = Task {
            var sequence = 0
            for await value in stream where sequence < Engine.progressEventsMax {
                sequence += 1
                try await engine.record([RunEvents.progress(id, task, attempt: attempt, sequence: sequence, value: value)])
            }
        }
    }

    func report(_ value: WorkflowValue) {
        reports.yield(value)
    }

    func finish() async throws {
        reports.finish()
        try await recorder.value
    }
}
