import BanyanClient
import Foundation
import Synchronization

/// A workflow written in Swift (docs/WORKFLOWS.md, "Workflows in Swift"): a closure over a
/// `WorkflowContext` and a typed input. Every step, sleep and child run it goes through is an
/// event in the log, with the same keys and types as a YAML run's tasks; running the same run
/// again replays it: completed steps are not executed again, their recorded outputs are returned.
/// The closure must be deterministic apart from its steps (the same steps, with the same names,
/// in the same order, for the same input and step outputs).
public struct CodeWorkflow<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    public let name: String
    let body: @Sendable (WorkflowContext, Input) async throws -> Output

    public init(_ name: String, _ body: @escaping @Sendable (WorkflowContext, Input) async throws -> Output) {
        self.name = name
        self.body = body
    }
}

public enum CodeWorkflowError: Error, Sendable, CustomStringConvertible {
    case badName(String)
    case duplicateStep(String)
    case notThisWorkflow(run: String, recorded: String, given: String)
    case stepFailed(step: String, error: String)
    case runFailed(run: String, error: String)
    case encoding(String)
    case heldElsewhere(run: String, step: String)
    case signalTimeout(String)
    case cancelled(run: String, reason: String)

    public var description: String {
        switch self {
        case .badName(let name): "\"\(name.prefix(80))\" is not a step or workflow name: 1-128 letters, digits, _ and -"
        case .duplicateStep(let name): "step \(name) ran twice in one execution of the run: step names are unique in a run"
        case .notThisWorkflow(let run, let recorded, let given): "run \(run) is a run of \(recorded), not of \(given)"
        case .stepFailed(let step, let error): "step \(step) failed: \(error)"
        case .runFailed(let run, let error): "run \(run) failed: \(error)"
        case .encoding(let why): "a value cannot be recorded: \(why)"
        case .heldElsewhere(let run, let step): "another engine runs step \(step) of run \(run): run a code workflow's run in one process at a time"
        case .signalTimeout(let name): "no signal \(name) within its timeout"
        case .cancelled(let run, let reason): "run \(run) was cancelled" + (reason.isEmpty ? "" : ": \(reason)")
        }
    }
}

/// Starts and runs `CodeWorkflow`s against a server, through an `Engine`'s client and claims.
public struct CodeRunner: Sendable {
    public let engine: Engine

    public init(engine: Engine) {
        self.engine = engine
    }

    /// Records the run's request (`workflow.run.requested` with `code` naming the workflow and
    /// the input as JSON); returns the run id. Starting the same id with the same input is one run.
    public func start<I, O>(_ workflow: CodeWorkflow<I, O>, input: I, run: String? = nil, parent: String? = nil) async throws -> String {
        try WorkflowContext.check(workflow.name)
        let runID = run ?? Engine.newRunID()
        guard WorkflowLimits.isName(runID, bytesMax: WorkflowLimits.runIDBytesMax) else { throw Engine.EngineError.badRunID(runID) }
        let id = RunEvents.RunID(run: runID, workflow: workflow.name, version: "code")
        var members = id.members + [(key: "code", value: .bool(true)), (key: "input", value: try WorkflowContext.encode(input))]
        if let parent { members.append((key: "parent", value: .text(parent))) }
        let draft = RunEvents.Draft(
            type: "workflow.run.requested", key: RunEvents.runKey(runID, "requested"), stream: RunEvents.stream(runID), parentKeys: parent.map { [$0] } ?? [],
            payload: .object(members))
        do {
            try await engine.append(Array(WorkflowValue.array([draft.json]).json.utf8))
        } catch let error as BanyanClientError where error.status == 409 {
            throw Engine.EngineError.runExists(runID)
        }
        return runID
    }

    /// Runs (or resumes, or reads the result of) run `run` of `workflow` in this process; its
    /// output, or `CodeWorkflowError.runFailed`.
    public func run<I, O>(_ workflow: CodeWorkflow<I, O>, id run: String) async throws -> O {
        var reader = RunReader(client: engine.client, run: run)
        guard let request = try await reader.request() else { throw Engine.EngineError.unknownRun(run) }
        let payload = request.payload
        guard payload["code"] == .bool(true), let recorded = payload["workflow"]?.stringValue, recorded == workflow.name else {
            throw CodeWorkflowError.notThisWorkflow(run: run, recorded: payload["workflow"]?.stringValue ?? "?", given: workflow.name)
        }
        let input: I = try WorkflowContext.decode(payload["input"] ?? .null)
        let events = try await reader.next()
        let id = RunEvents.RunID(run: run, workflow: workflow.name, version: "code")
        var cancelRequest: WorkflowValue?
        for event in events {
            if event.type == "workflow.run.completed" { return try WorkflowContext.decode(event.payload["output"] ?? .null) }
            if event.type == "workflow.run.failed" { throw CodeWorkflowError.runFailed(run: run, error: event.payload["error"]?.stringValue ?? "failed") }
            if event.type == "workflow.run.cancelled" { throw CodeWorkflowError.cancelled(run: run, reason: event.payload["reason"]?.stringValue ?? "") }
            if event.type == "workflow.run.cancel_requested" { cancelRequest = event.payload }
        }
        let context = WorkflowContext(runner: self, id: id, events: events)
        if !events.contains(where: { $0.type == "workflow.run.started" }) {
            try await engine.record([RunEvents.finished(id, "started", causes: [RunEvents.runKey(run, "requested")])])
        }
        do {
            // The body races the run's cancel request (`banyan workflow cancel`): a request
            // cancels the body (cooperatively: a step's closure sees the cancellation; no new
            // step starts) and the run ends cancelled.
            let cancelKey = RunEvents.runKey(run, "cancel_requested")
            let outcome: CodeOutcome<O>
            if let cancelRequest {
                outcome = .cancel(cancelRequest)
            } else {
                outcome = try await withThrowingTaskGroup(of: CodeOutcome<O>.self) { group in
                    group.addTask { .output(try await workflow.body(context, input)) }
                    group.addTask { .cancel(try await engine.cancels.wait(for: cancelKey, deadlineUnixNano: nil)) }
                    let first = try await group.next()!
                    group.cancelAll()
                    return first
                }
            }
            switch outcome {
            case .output(let output):
                try await engine.record([RunEvents.finished(id, "completed", causes: context.lastKeys, extra: [(key: "output", value: try WorkflowContext.encode(output))])])
                return output
            case .cancel(let request):
                let reason = request?["reason"]?.stringValue ?? ""
                try await engine.record([RunEvents.finished(id, "cancelled", causes: [cancelKey], extra: [(key: "reason", value: .text(reason))])])
                throw CodeWorkflowError.cancelled(run: run, reason: reason)
            }
        } catch let error as CodeWorkflowError where { if case .cancelled = error { true } else { false } }() {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as CodeWorkflowError where { if case .heldElsewhere = error { true } else { false } }() {
            throw error  // another process runs it: not this one's to end
        } catch {
            // A step that failed for good, or the workflow's own code throwing: the run fails.
            let message = String("\(error)".prefix(4_096))
            try await engine.record([RunEvents.finished(id, "failed", causes: context.lastKeys, extra: [(key: "error", value: .text(message))])])
            throw CodeWorkflowError.runFailed(run: run, error: message)
        }
    }
}

/// How a Swift run's body ended: its output, or its cancel request (nil: the wait was cancelled).
enum CodeOutcome<O: Sendable>: Sendable {
    case output(O)
    case cancel(WorkflowValue?)
}

/// What a `CodeWorkflow`'s closure works through. Thread-safe: steps may run at once
/// (`parallel`, or `async let` over `step`).
public final class WorkflowContext: Sendable {
    public var run: String { id.run }
    let runner: CodeRunner
    let id: RunEvents.RunID

    struct Replay {
        /// Completed steps' outputs, by name.
        var completed: [String: WorkflowValue] = [:]
        /// Attempts started per step, and when the latest started (server time).
        var attempts: [String: Int] = [:]
        var startedAt: [String: Int64] = [:]
        /// Attempts with an outcome, as `<step>/<attempt>`.
        var finishedAttempts: Set<String> = []
        var completionKeys: [String: String] = [:]
        /// Steps whose latest attempt failed (their error), to give up on replay when no attempt is left.
        var failedLast: [String: String] = [:]
        /// Names used in this execution, and how many sleeps and children it has asked for.
        var used: Set<String> = []
        var sleeps = 0
        /// The latest completions: the causes of what comes next.
        var last: [String] = []
    }

    private let replay: Mutex<Replay>

    init(runner: CodeRunner, id: RunEvents.RunID, events: [RunEvents.Recorded]) {
        self.runner = runner
        self.id = id
        var r = Replay()
        for event in events {
            guard let step = event.payload["task"]?.stringValue, let key = event.key else { continue }
            switch event.type {
            case "workflow.task.started":
                r.attempts[step] = max(r.attempts[step] ?? 0, event.payload["attempt"]?.intValue ?? 1)
                // The first start: a durable sleep counts from it, however often it is resumed.
                if r.startedAt[step] == nil { r.startedAt[step] = event.timeUnixNano }
            case "workflow.task.completed":
                if r.completed[step] == nil {
                    r.completed[step] = event.payload["output"] ?? .null
                    r.completionKeys[step] = key
                }
                r.finishedAttempts.insert("\(step)/\(event.payload["attempt"]?.intValue ?? 1)")
            case "workflow.task.failed":
                r.finishedAttempts.insert("\(step)/\(event.payload["attempt"]?.intValue ?? 1)")
                r.failedLast[step] = event.payload["error"]?.stringValue ?? "failed"
            default: break
            }
        }
        replay = Mutex(r)
    }

    var lastKeys: [String] { replay.withLock { Array($0.last.suffix(Engine.causesMax)) } }

    static func check(_ name: String) throws {
        guard WorkflowLimits.isName(name, bytesMax: WorkflowLimits().nameBytesMax) else {
            throw CodeWorkflowError.badName(name)
        }
    }

    static func encode<T: Encodable>(_ value: T) throws -> WorkflowValue {
        do { return try JSONText.parse(Array(try JSONEncoder().encode(value))) } catch { throw CodeWorkflowError.encoding("\(error)") }
    }

    static func decode<T: Decodable>(_ value: WorkflowValue) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(value.json.utf8)) } catch { throw CodeWorkflowError.encoding("\(error)") }
    }

    /// Runs `body` as step `name` once: recorded as the attempts of task `name` (`started`, then
    /// `completed` with the output or `failed`), retried under `retry`; in a replay a completed
    /// step returns its recorded output without running. An attempt started and never finished
    /// (the process died) is recorded failed and the step runs again (at least once).
    public func step<T: Codable & Sendable>(_ name: String, retry: RetryPolicy = .none, _ body: @Sendable () async throws -> T) async throws -> T {
        try Self.check(name)
        let (done, earlier, earlierFinished, lastError) = try replay.withLock { r throws(CodeWorkflowError) -> (WorkflowValue?, Int, Bool, String?) in
            guard r.used.insert(name).inserted else { throw CodeWorkflowError.duplicateStep(name) }
            if r.completed[name] != nil, let key = r.completionKeys[name] { r.last.append(key) }  // replayed: still a cause of what follows
            let earlier = r.attempts[name] ?? 0
            return (r.completed[name], earlier, r.finishedAttempts.contains("\(name)/\(earlier)"), r.failedLast[name])
        }
        if let done { return try Self.decode(done) }
        // Its last attempt failed and none is left (the process died before the run's failure was recorded).
        if let lastError, earlier >= retry.maxAttempts, earlierFinished {
            throw CodeWorkflowError.stepFailed(step: name, error: lastError)
        }
        let engine = runner.engine
        var attempt = earlier
        if earlier > 0, !earlierFinished {
            try await engine.record([RunEvents.task(
                id, name, attempt: earlier, .failed, causes: [RunEvents.taskKey(id.run, name, attempt: earlier, .started)],
                extra: [(key: "error", value: .text("the engine stopped during this attempt")), (key: "duration_ms", value: .null)])])
        }
        while true {
            attempt += 1
            let cause = attempt == 1 ? lastKeys.last ?? RunEvents.runKey(id.run, "requested") : RunEvents.taskKey(id.run, name, attempt: attempt - 1, .failed)
            let started = RunEvents.task(id, name, attempt: attempt, .started, causes: [cause], extra: [(key: "engine", value: .text(engine.engineID))])
            guard try await engine.record([started]).isEmpty else { throw CodeWorkflowError.heldElsewhere(run: id.run, step: name) }
            let began = Engine.nowUnixNano()
            do {
                let value = try await body()
                let output = try Self.encode(value)
                let completed = RunEvents.task(
                    id, name, attempt: attempt, .completed, causes: [started.key],
                    extra: [(key: "output", value: output), (key: "duration_ms", value: .number(String((Engine.nowUnixNano() - began) / 1_000_000)))])
                try await engine.record([completed])
                replay.withLock { $0.last.append(completed.key) }
                return value
            } catch let error as CancellationError {
                throw error
            } catch {
                let failed = RunEvents.task(
                    id, name, attempt: attempt, .failed, causes: [started.key],
                    extra: [(key: "error", value: .text(String("\(error)".prefix(4_096)))), (key: "duration_ms", value: .number(String((Engine.nowUnixNano() - began) / 1_000_000)))])
                try await engine.record([failed])
                guard attempt < retry.maxAttempts else { throw CodeWorkflowError.stepFailed(step: name, error: "\(error)") }
                let pause = retry.backoff(before: attempt + 1)
                try await Task.sleep(for: retry.jitter ? pause * Double.random(in: 0.5...1.0) : pause)
                try await engine.record([RunEvents.task(id, name, attempt: attempt + 1, .retrying, causes: [failed.key])])
            }
        }
    }

    /// Waits for signal `name` sent to this run (`banyan workflow signal RUN NAME --payload JSON`)
    /// and returns its payload: step `signal-<name>`, so a replay returns the recorded payload and
    /// a resumed run goes on waiting; with `timeout` (counted from the step's first start) it
    /// fails the step when no signal came.
    public func waitForSignal<T: Codable & Sendable>(_ name: String, as type: T.Type = T.self, timeout: Duration? = nil) async throws -> T {
        try Self.check(name)
        let key = RunEvents.signalKey(id.run, name)
        let step = "signal-\(name)"
        let startedAt = replay.withLock { $0.startedAt[step] }
        let signals = runner.engine.signals
        return try await self.step(step) {
            let deadline = timeout.map { (startedAt ?? Engine.nowUnixNano()) + Engine.milliseconds($0) * 1_000_000 }
            guard let event = try await signals.wait(for: key, deadlineUnixNano: deadline) else {
                try Task.checkCancellation()
                throw CodeWorkflowError.signalTimeout(name)
            }
            return try Self.decode(event["payload"] ?? .null)
        }
    }

    /// Steps at once, their results in the order given.
    public func parallel<T: Codable & Sendable>(_ steps: [(name: String, body: @Sendable () async throws -> T)]) async throws -> [T] {
        try await withThrowingTaskGroup(of: (Int, T).self) { group in
            for (i, step) in steps.enumerated() {
                group.addTask { (i, try await self.step(step.name, step.body)) }
            }
            var results = [T?](repeating: nil, count: steps.count)
            for try await (i, value) in group { results[i] = value }
            return results.map { $0! }
        }
    }

    /// A durable sleep: step `sleep-<n>` (the n-th sleep of the run) completes `duration` after
    /// its first `started`, by the wall clock, however often the run is resumed meanwhile.
    public func sleep(for duration: Duration) async throws {
        let n = replay.withLock { r -> Int in
            r.sleeps += 1
            return r.sleeps
        }
        let name = "sleep-\(n)"
        let startedAt = replay.withLock { $0.startedAt[name] }
        let _: Int64 = try await step(name) {
            let due = (startedAt ?? Engine.nowUnixNano()) + Engine.milliseconds(duration) * 1_000_000
            let remaining = due - Engine.nowUnixNano()
            if remaining > 0 { try await Task.sleep(for: .nanoseconds(remaining)) }
            return Engine.milliseconds(duration)
        }
    }

    /// Runs `workflow` as a child run (its id derived from this run and `name`, its request
    /// naming this step's attempt as its parent) in this process, as step `name`: in a replay the
    /// child's recorded output is returned; a resumed child continues from its own events.
    public func child<I, O>(_ name: String, _ workflow: CodeWorkflow<I, O>, _ input: I) async throws -> O {
        let runner = self.runner
        let run = "sub-" + RunEvents.version(of: "run/\(id.run)/task/\(name)")
        let parent = id.run
        return try await step(name) {
            do {
                _ = try await runner.start(workflow, input: input, run: run, parent: RunEvents.taskKey(parent, name, attempt: 1, .started))
            } catch Engine.EngineError.runExists {
                // Started before this attempt (and its input is this one's: the same step replayed).
            }
            return try await runner.run(workflow, id: run)
        }
    }
}
