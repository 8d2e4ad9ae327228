import BanyanClient
import Foundation
import Synchronization

/// Runs workflows as a client of the log (docs/WORKFLOWS.md, "The engine"). It keeps nothing of
/// its own: `start` records the run's request (with the definition and inputs), and `drive`
/// reads the run's stream, folds it into a `RunState`, records the next transitions and runs the
/// tasks, until the run ends. A run driven again after a crash continues from its events:
/// completed tasks are not run again; an attempt that was started but never finished is
/// recorded as failed and retried under its policy (at least once for side effects).
///
/// Each engine has an id of its own, recorded in the `started` events it claims: when two engines
/// drive one run, the log takes one claim per attempt and the other engine leaves that attempt
/// alone (docs/WORKFLOWS.md, "Several engines").
public struct Engine: Sendable {
    public let client: BanyanHTTPClient
    /// Recorded in the attempts and compensations this engine claims.
    public let engineID: String
    /// Tasks of one run running at once, at most (a definition's `concurrency`, default 8, is
    /// the bound below this one).
    public var concurrentTasksMax = 1_000
    /// Swift closures `swift` tasks name (`function: <name>`).
    public var functions: [String: Function] = [:]
    /// How often signals are read while attempts wait for them, and a run whose attempts
    /// another engine holds is read for their outcome.
    public let pollInterval: Duration
    /// Says what happened, a line at a time (the CLI prints them).
    public let log: @Sendable (String) -> Void
    /// Bounds the attempts doing work (shell, http, swift) across every run this engine drives;
    /// timers and waits for signals hold none.
    let permits: Permits
    /// One reader of signals for every waiting attempt, and one of cancel requests for every
    /// run being driven.
    let signals: SignalWatcher
    let cancels: SignalWatcher
    /// Readers of pauses and resumes, for every run being driven.
    let pauses: SignalWatcher
    let resumes: SignalWatcher
    /// Batches the appends of every run this engine drives.
    let appender: Appender
    /// What this engine did, for `/metrics` (shared by its copies).
    public var metrics = EngineMetrics()
    /// Random per engine value (its copies share it): tells this process's run claims from
    /// those an earlier process under the same `engineID` made.
    public let incarnation = Engine.newRunID()
    /// Which engines are alive (set by `EngineService`, which records this engine's heartbeats);
    /// nil: this engine takes over the unfinished attempts it finds when it begins a drive.
    var liveness: Liveness?

    /// `tasksMax`: attempts doing work at once across all runs (`--max-concurrent-tasks`).
    /// `engineID`: a name that stays the same across restarts lets a restarted engine take over
    /// its own earlier attempts at once, without waiting out its heartbeats; two engines running
    /// at once must never share one. Default: a new random id.
    public init(
        client: BanyanHTTPClient, tasksMax: Int = Engine.tasksMaxDefault, pollInterval: Duration = .milliseconds(100), engineID: String? = nil,
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.client = client
        self.engineID = engineID ?? Self.newRunID()
        permits = Permits(max(1, tasksMax))
        self.pollInterval = pollInterval
        self.log = log
        signals = SignalWatcher(client: client, type: "workflow.run.signaled", interval: pollInterval, log: log)
        cancels = SignalWatcher(client: client, type: "workflow.run.cancel_requested", interval: pollInterval, log: log)
        pauses = SignalWatcher(client: client, type: "workflow.run.paused", interval: pollInterval, log: log)
        resumes = SignalWatcher(client: client, type: "workflow.run.resumed", interval: pollInterval, log: log)
        appender = Appender(send: { body in try await Self.append(body, client: client, log: log) }, log: log)
    }

    /// What a `swift` task's closure gets.
    public struct FunctionCall: Sendable {
        public var run: String
        public var task: String
        public var attempt: Int
        /// The attempt's `started` key (the same role as `BANYAN_ATTEMPT_KEY`).
        public var attemptKey: String
        /// The task's `inputs`, rendered: an object.
        public var inputs: WorkflowValue
        /// Reports progress: recorded as `workflow.task.progress` (at most
        /// `Engine.progressEventsMax` per attempt, before the attempt's outcome).
        public var progress: @Sendable (WorkflowValue) -> Void = { _ in }
    }

    /// A closure a `swift` task runs: its result is the task's output; an error it throws fails
    /// the attempt, its description the recorded error.
    public typealias Function = @Sendable (FunctionCall) async throws -> WorkflowValue

    /// Functions every engine the CLI starts has: `noop` completes at once with its inputs as
    /// its output (passing values along, and measuring the engine itself).
    public static let builtinFunctions: [String: Function] = ["noop": { $0.inputs }]

    /// Attempts doing work at once across an engine's runs unless configured: enough that
    /// short tasks are not held up behind one another's durable writes (16 held no-op tasks to
    /// about 3,000/s, 64 let them reach 5,000/s: docs/PERFORMANCE.md, "Workflows").
    public static let tasksMaxDefault = 64

    /// A task's output, JSON-encoded, is kept to this (a larger one is cut, and says so): the
    /// event must fit the server's payload limit with room to spare.
    public static let outputBytesMax = 256 << 10
    /// Progress reports recorded per attempt; later ones are dropped.
    public static let progressEventsMax = 100

    /// Causes named per event (the server takes up to 1,024 parents).
    public static let causesMax = 64
    /// Tries of one append when the server is overloaded or out of reach.
    public static let appendTries = 8

    public enum EngineError: Error, Sendable, CustomStringConvertible {
        case definition(DefinitionError)
        case inputs(InputError)
        case unknownRun(String)
        case log(String)
        case runExists(String)
        case badRunID(String)
        case subWorkflow(String)

        public var description: String {
            switch self {
            case .definition(let e): "the definition: \(e)"
            case .inputs(let e): "\(e)"
            case .unknownRun(let run): "no run \(run) in the log (no workflow.run.requested event with key run/\(run)/requested)"
            case .log(let why): "the run's events cannot be read: \(why)"
            case .runExists(let run): "run \(run) exists with another definition or other inputs"
            case .badRunID(let run): "\"\(run.prefix(80))\" is not a run id: 1-64 letters, digits, _ and -"
            case .subWorkflow(let why): "sub-workflows: \(why)"
            }
        }
    }

    /// Validates `definition` and `inputs` and records the run's request. Returns the run id
    /// (`run` if given: starting the same run id twice is one run). `children`: the definitions
    /// its `sub_workflow` tasks name, and theirs, by name (`children(of:resolve:)`).
    public func start(
        definition text: String, inputs given: [String: WorkflowValue], run: String? = nil, children: [String: String] = [:], parent: String? = nil
    ) async throws -> String {
        let definition: WorkflowDefinition
        // Through the cache: `children(of:)` below reads the same text again.
        do { definition = try RunReader.definitions.parse(text) } catch { throw EngineError.definition(error) }
        let inputs: [String: WorkflowValue]
        do { inputs = try definition.runInputs(given) } catch { throw EngineError.inputs(error) }
        let needed = try Self.children(of: text, resolve: { children[$0] })
        let runID = run ?? Self.newRunID()
        guard WorkflowLimits.isName(runID, bytesMax: WorkflowLimits.runIDBytesMax) else { throw EngineError.badRunID(runID) }
        let id = RunEvents.RunID(run: runID, workflow: definition.name, version: RunEvents.version(of: text))
        // Not `record`: here a conflict is the caller's mistake, not another engine's progress.
        let body = WorkflowValue.array([RunEvents.requested(id, definition: text, inputs: inputs, children: needed, parent: parent).json]).json
        do {
            _ = try await append(Array(body.utf8))
        } catch let error as BanyanClientError where error.status == 409 {
            throw EngineError.runExists(runID)
        }
        return runID
    }

    /// How deep sub-workflows may nest.
    public static let childDepthMax = 8

    /// The definitions `text`'s `sub_workflow` tasks name, and theirs, by name, found with
    /// `resolve`. Refuses a name `resolve` does not know, a definition whose `name` is not the
    /// one asked for, a workflow that is its own descendant, and nesting deeper than
    /// `childDepthMax`.
    public static func children(of text: String, resolve: (String) throws -> String?) throws -> [String: String] {
        var found: [String: String] = [:]
        var depth: [String: Int] = [:]  // the deepest level each name was checked at
        func visit(_ text: String, path: [String]) throws {
            let definition: WorkflowDefinition
            do { definition = try RunReader.definitions.parse(text) } catch { throw EngineError.definition(error) }
            for task in definition.tasks {
                guard case .subWorkflow(let name) = task.kind else { continue }
                if path.contains(name) || name == definition.name {
                    throw EngineError.subWorkflow("workflow \(name) runs itself through \((path + [definition.name, name]).joined(separator: " -> "))")
                }
                guard path.count < childDepthMax else { throw EngineError.subWorkflow("sub-workflows nest deeper than \(childDepthMax) levels at \(name)") }
                // Checked again only when reached deeper (the depth bound applies to every path).
                if let seen = depth[name], seen >= path.count + 1 { continue }
                depth[name] = path.count + 1
                guard let child = try found[name] ?? resolve(name) else {
                    throw EngineError.subWorkflow("task \(task.id) runs workflow \(name), whose definition was not given")
                }
                let childName: String
                do { childName = try RunReader.definitions.parse(child).name } catch { throw EngineError.subWorkflow("the definition of \(name): \(error)") }
                guard childName == name else { throw EngineError.subWorkflow("the definition found for workflow \(name) is named \(childName)") }
                found[name] = child
                try visit(child, path: path + [definition.name])
            }
        }
        try visit(text, path: [])
        return found
    }

    static func newRunID() -> String {
        let bytes = (0..<10).map { _ in UInt8.random(in: 0...255) }
        return bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    /// What a child of a drive did: the events it recorded (applied at once, not read back),
    /// and whether the log refused one of them (another engine's; then the run is read).
    struct Step: Sendable {
        var task: String
        var recorded: [RunEvents.Recorded] = []
        var refused = false
        /// The run's cancel request arrived (the child that waits for it).
        var cancel: WorkflowValue?
        /// The run's next pause or resume arrived (the child that waits for it).
        var control: RunEvents.Recorded?
    }

    /// Drives the run until it ends; returns how it ended.
    ///
    /// The run's stream is read at the start, after the log refused something this engine
    /// recorded, and while this engine waits for another one; what this engine records itself is
    /// applied as it is recorded (the log holds exactly that), so a run of many small tasks is not
    /// a read per task.
    public func drive(run: String) async throws -> RunState.Outcome {
        var reader = RunReader(client: client, run: run)
        let (id, initial) = try await reader.load()
        let definition = initial.definition
        let taskIDs = definition.tasks.map(\.id)
        var state = initial
        var keys = Keys()
        // A retried run's kept tasks cause their dependents through the failed run's completions.
        if let request = try await reader.request() { for (task, kept) in RunReader.kept(request) { keys.completed[task] = kept.key } }
        var finished: Set<String> = []  // run-level events already recorded
        let limit = max(1, min(definition.concurrency, concurrentTasksMax))
        let stop = StopFlag()
        // Set while the run is paused: a retry that slept through its backoff starts nothing.
        let pausedFlag = StopFlag()
        let interrupts = Interrupts()

        func apply(_ events: [RunEvents.Recorded]) {
            for event in events {
                // Recorded here and applied, then read back: once is enough.
                if let key = event.key, keys.all.contains(key) { continue }
                keys.note(event)
                if let t = RunEvents.transition(event) { state.apply(t) }
                if event.type.hasPrefix("workflow.run.") { finished.insert(String(event.type.dropFirst("workflow.run.".count))) }
            }
        }

        return try await withThrowingTaskGroup(of: Step.self) { group in
            var running: Set<String> = []
            var recovered = false
            var inherited: Set<String> = []  // recorded before this engine drove the run
            var mustRead = true
            var ticking = false  // a poll-interval child is pending
            // The run's cancel request: waited for from before the first read of the run, so one
            // recorded after that read reaches the waiter, one recorded before is in the read.
            let registered = AsyncStream<Void>.makeStream()
            let cancelKey = RunEvents.runKey(run, "cancel_requested")
            group.addTask {
                defer { registered.continuation.finish() }  // also when the wait cannot begin
                // nil: the drive ended and cancelled this wait.
                let request = try await self.cancels.wait(for: cancelKey, deadlineUnixNano: nil, lookUp: false, registered: { registered.continuation.finish() })
                return Step(task: Self.cancelWaiter, cancel: request)
            }
            for await _ in registered.stream {}
            // The run's next pause (or, while paused, its resume): a child waits for its key.
            var controlArmed = false
            func armControl() {
                let pausedNow = keys.pauses > keys.resumes
                let key = RunEvents.runKey(run, pausedNow ? "resumed/\(keys.pauses)" : "paused/\(keys.pauses + 1)")
                let (watcher, type) = pausedNow ? (resumes, "workflow.run.resumed") : (pauses, "workflow.run.paused")
                controlArmed = true
                group.addTask {
                    let payload = try await watcher.wait(for: key, deadlineUnixNano: nil)
                    return Step(task: Self.controlWaiter, control: payload.map { RunEvents.Recorded(id: 0, type: type, key: key, payload: $0) })
                }
            }
            /// A work attempt (shell, http, swift) can be interrupted by a pause with `now`.
            func start(_ task: TaskSpec, _ body: @escaping @Sendable () async throws -> Step) {
                if task.kind.waits {
                    group.addTask(operation: body)
                } else {
                    group.addTask { try await interrupts.run(task.id, body) }
                }
            }
            /// Records `drafts` and applies what the log took; false if it refused any.
            func recordApplying(_ drafts: [RunEvents.Draft]) async throws -> Bool {
                let refused = try await record(drafts)
                apply(drafts.filter { !refused.contains($0.key) }.map(RunEvents.recorded))
                if !refused.isEmpty { mustRead = true }
                return refused.isEmpty
            }
            while true {
                let read = mustRead
                if mustRead {
                    mustRead = false
                    apply(try await reader.next())
                }
                state.settle()
                if !recovered {
                    recovered = true
                    inherited = keys.all
                    if !finished.contains("started") {
                        _ = try await recordApplying([RunEvents.finished(id, "started", causes: [RunEvents.runKey(run, "requested")])])
                    }
                }
                if !controlArmed { armControl() }
                if keys.paused { pausedFlag.set() } else { pausedFlag.clear() }
                // Paused with `now`: this engine's work attempts stop, and are recorded failed as
                // interrupted, to run again once the run resumes (not counted against max_attempts).
                if keys.paused, keys.pauseNow {
                    let stopped = interrupts.interrupt()
                    if !stopped.isEmpty { log("run \(run): paused; interrupting \(stopped.sorted().joined(separator: ", "))") }
                } else {
                    interrupts.resume()
                }
                // Attempts another engine claimed and will never finish: it stopped.
                var drafts: [RunEvents.Draft] = []
                // (By index: a whole TaskSpec is copied only for the tasks that pass.)
                for i in taskIDs.indices where keys.cancelRequest == nil && state.progress[i].state == .started && !running.contains(taskIDs[i]) {
                    let task = definition.tasks[i]
                    let attempt = max(1, state.progress[i].attempts)
                    guard try await stopped(claimant: keys.claimant[task.id], key: RunEvents.taskKey(id.run, task.id, attempt: attempt, .started), inherited: inherited) else { continue }
                    if task.kind.waits, let started = keys.startedAt[task.id] {
                        // A durable timer fires when it was due, not a whole sleep after the
                        // restart; a wait for a signal goes on waiting, within its timeout.
                        running.insert(task.id)
                        let snapshot = state
                        let signal = keys.signal(for: task)
                        group.addTask {
                            try await self.attempt(id, task, attempt: attempt, cause: nil, state: snapshot, resumedStartedAt: started, signal: signal)
                        }
                        continue
                    }
                    drafts.append(RunEvents.task(
                        id, task.id, attempt: attempt, .failed, causes: keys.latest(task.id).map { [$0] } ?? [],
                        extra: [(key: "error", value: .text("the engine stopped during this attempt")), (key: "duration_ms", value: .null)]))
                }
                if !drafts.isEmpty {
                    log("recovered \(drafts.count) attempts an engine started but never finished")
                    _ = try await recordApplying(drafts)
                    continue
                }
                var outcome = state.outcome
                // A cancel request ends the run cancelled, unless it ended first (recorded); the
                // tasks it cancelled count as done, which must not read as the run's completion.
                if let request = keys.cancelRequest, !finished.contains("completed"), !finished.contains("failed"),
                    outcome != .completed || state.progress.contains(where: { $0.state == .cancelled })
                {
                    outcome = .cancelled(reason: request["reason"]?.stringValue ?? "")
                    // The attempts running stop here: their processes are killed, their waits end.
                    if !running.isEmpty || ticking {
                        group.cancelAll()
                        while !group.isEmpty {
                            if let step = try? await group.next() { apply(step.recorded) }
                        }
                        running.removeAll()
                        ticking = false
                        controlArmed = false
                        mustRead = true
                        continue
                    }
                    var cancelled: [RunEvents.Draft] = []
                    for i in taskIDs.indices {
                        let p = state.progress[i]
                        guard let s = p.state, s == .started || s == .scheduled || s == .retrying else { continue }
                        // Another live engine's attempt is theirs to cancel (they read the request too).
                        let attempt = s == .retrying ? p.attempts + 1 : max(1, p.attempts)
                        if s == .started {
                            let key = RunEvents.taskKey(run, taskIDs[i], attempt: attempt, .started)
                            guard try await stopped(claimant: keys.claimant[taskIDs[i]], key: key, inherited: inherited) || keys.claimant[taskIDs[i]] == engineID else { continue }
                        }
                        // A child run is cancelled with its parent, and driven to its end here.
                        if s == .started, case .subWorkflow = definition.tasks[i].kind {
                            let child = "sub-" + RunEvents.version(of: RunEvents.taskKey(run, taskIDs[i], attempt: attempt, .started))
                            if (try? await cancel(run: child, reason: "its parent run \(run) was cancelled")) != nil {
                                _ = try? await drive(run: child)
                            }
                        }
                        cancelled.append(RunEvents.task(
                            id, taskIDs[i], attempt: attempt, .cancelled, causes: [RunEvents.runKey(run, "cancel_requested")] + (keys.latest(taskIDs[i]).map { [$0] } ?? [])))
                    }
                    if !cancelled.isEmpty {
                        _ = try await recordApplying(cancelled)
                        continue
                    }
                    if state.progress.contains(where: { $0.state == .started }) {
                        // Attempts another engine still holds: it cancels them; read on.
                        try await Task.sleep(for: pollInterval)
                        mustRead = true
                        continue
                    }
                }
                if outcome == nil { stop.clear() }
                if outcome != nil {
                    // Retries still sleeping through their backoff give up; running attempts finish.
                    stop.set()
                    if running.isEmpty {
                        // A failure is decided from the log as it is now, not only from what this
                        // engine recorded (another engine may have completed a retry). A completion
                        // needs no read: completed and skipped tasks stay so whatever else the log holds.
                        guard read || outcome == .completed else {
                            mustRead = true
                            continue
                        }
                        var decided = (state: state, keys: keys)
                        if case .failed? = outcome {
                            // Compensations go latest completion first as the log orders them:
                            // the run folded again from a whole read.
                            decided = try await refold(run)
                            outcome = decided.state.outcome ?? outcome
                        }
                        group.cancelAll()  // a pending tick
                        if try await finish(id, decided.state, outcome!, keys: decided.keys, inherited: inherited, finished: finished) { return outcome! }
                        // Another engine compensates: read on until it is done, or stops.
                        try await Task.sleep(for: pollInterval)
                        mustRead = true
                        continue
                    }
                }
                // Failed attempts with retries left: the pause, then the next attempt.
                for i in taskIDs.indices where outcome == nil && !keys.paused && running.count < limit && !running.contains(taskIDs[i]) && state.progress[i].state == .failed {
                    let task = definition.tasks[i]
                    guard case .retry(let attempt, let pause) = state.retryDecision(for: task.id) else { continue }
                    running.insert(task.id)
                    let failedKey = keys.latest(task.id)
                    let jittered = task.retry.jitter ? pause * Double.random(in: 0.5...1.0) : pause
                    let snapshot = state
                    let signal = keys.signal(for: task)
                    start(task) {
                        try await Task.sleep(for: jittered)
                        guard !stop.isSet, !pausedFlag.isSet else { return Step(task: task.id) }
                        let retrying = RunEvents.task(id, task.id, attempt: attempt, .retrying, causes: failedKey.map { [$0] } ?? [])
                        let due = ContinuousClock.now
                        guard try await self.record([retrying]).isEmpty else { return Step(task: task.id, refused: true) }
                        self.metrics.task("retried")
                        var step = try await self.attempt(id, task, attempt: attempt, cause: retrying.key, state: snapshot, signal: signal, readyAt: due)
                        step.recorded.insert(RunEvents.recorded(retrying), at: 0)
                        return step
                    }
                }
                // Scheduled or retrying, not started (the engine stopped in between): start the attempt.
                for i in taskIDs.indices where outcome == nil && !keys.paused && running.count < limit && !running.contains(taskIDs[i]) {
                    let p: RunState.Progress? = state.progress[i]
                    guard p?.state == .scheduled || p?.state == .retrying else { continue }
                    let task = definition.tasks[i]
                    let attempt = (p?.attempts ?? 0) + 1
                    running.insert(task.id)
                    let cause = RunEvents.taskKey(id.run, task.id, attempt: attempt, p?.state == .scheduled ? .scheduled : .retrying)
                    let snapshot = state
                    let signal = keys.signal(for: task)
                    start(task) {
                        try await self.attempt(id, task, attempt: attempt, cause: cause, state: snapshot, signal: signal)
                    }
                }
                // The ready tasks: each attempt records its `scheduled` with its claim, in one append.
                for i in state.readyIndices where !keys.paused && !running.contains(taskIDs[i]) && running.count < limit {
                    let taskID = taskIDs[i]
                    let task = definition.tasks[i]
                    // Its causes: what completed (or, for `event:x.failed`, failed) so that it could start.
                    let causes = Array(([RunEvents.runKey(id.run, "requested")] + task.dependencies.sorted().compactMap { keys.completed[$0] ?? keys.latest($0) }).prefix(Self.causesMax))
                    let scheduled = RunEvents.task(id, taskID, attempt: 1, .scheduled, causes: causes)
                    running.insert(taskID)
                    let snapshot = state
                    let signal = keys.signal(for: task)
                    let ready = ContinuousClock.now
                    start(task) {
                        try await self.attempt(id, task, attempt: 1, cause: scheduled.key, state: snapshot, scheduling: scheduled, signal: signal, readyAt: ready)
                    }
                }
                // Paused with nothing running: wait for the resume (or a cancel).
                if running.isEmpty, !keys.paused {
                    if state.outcome == nil, state.readyIndices.isEmpty {
                        // Nothing runs here: another engine holds the attempts left. Read on.
                        if read { try await Task.sleep(for: pollInterval) }
                        mustRead = true
                    }
                    continue
                }
                // Attempts another engine holds: read the run every poll interval meanwhile, to
                // take them over if that engine stops, and to go on with what they make ready.
                if !ticking, state.outcome == nil,
                    taskIDs.indices.contains(where: { state.progress[$0].state == .started && !running.contains(taskIDs[$0]) })
                {
                    ticking = true
                    group.addTask {
                        try? await Task.sleep(for: self.pollInterval)
                        return Step(task: "", refused: true)
                    }
                }
                if let step = try await group.next() {
                    if let request = step.cancel {
                        keys.cancelRequest = request
                        continue
                    }
                    if step.task == Self.controlWaiter {
                        controlArmed = false
                        if let event = step.control {
                            apply([event])
                            log("run \(run): \(event.type == "workflow.run.paused" ? "paused" : "resumed")")
                        }
                        continue
                    }
                    let interrupted = interrupts.wasInterrupted(step.task)
                    if step.task.isEmpty { ticking = false }
                    running.remove(step.task)
                    apply(step.recorded)
                    if step.refused { mustRead = true }
                    if interrupted, state.progress(of: step.task)?.state == .started, keys.claimant[step.task] == engineID {
                        // Its work stopped by a pause: recorded as interrupted (retried on resume).
                        let attempt = max(1, state.progress(of: step.task)?.attempts ?? 1)
                        _ = try await recordApplying([
                            RunEvents.task(
                                id, step.task, attempt: attempt, .failed,
                                causes: [RunEvents.taskKey(run, step.task, attempt: attempt, .started), RunEvents.runKey(run, "paused/\(keys.pauses)")],
                                extra: [(key: "error", value: .text("interrupted by a pause")), (key: "interrupted", value: .bool(true)), (key: "duration_ms", value: .null)])
                        ])
                    }
                }
            }
        }
    }

    /// The run folded from a whole read of its stream, in log order.
    private func refold(_ run: String) async throws -> (state: RunState, keys: Keys) {
        var reader = RunReader(client: client, run: run)
        var (_, state) = try await reader.load()
        var keys = Keys()
        for event in try await reader.next() {
            keys.note(event)
            if let t = RunEvents.transition(event) { state.apply(t) }
        }
        state.settle()
        return (state, keys)
    }

    /// Whether the engine that claimed an attempt or a compensation (`key`) has stopped: its
    /// heartbeats ended (`liveness`), or, for an engine without heartbeats (`banyan workflow
    /// resume`, `run --drive`), the claim was recorded before this drive began: taking over
    /// what it finds is what those commands are for.
    func stopped(claimant: String?, key: String, inherited: Set<String>) async throws -> Bool {
        // Its own claim from an earlier drive (one that ended in an error) is over.
        if claimant == engineID { return inherited.contains(key) }
        guard let liveness else { return inherited.contains(key) }
        if let claimant, !liveness.knows(claimant) {
            // An engine that began after the last read of heartbeats: read them now.
            try await liveness.refresh(client)
        }
        return !liveness.isAlive(claimant)
    }

    /// One attempt of `task`: `started` (this engine's claim; when another engine's claim is
    /// recorded the attempt is theirs and nothing runs here), the work, then `completed` or
    /// `failed`. `resumedStartedAt`: a timer or a wait an earlier engine started (Unix
    /// nanoseconds of its `started`), continued without a new claim.
    /// `scheduling`: the task's `scheduled` event, recorded in the same append as the claim, once
    /// the attempt has its permit (one durable write from "ready" to "started").
    private func attempt(
        _ id: RunEvents.RunID, _ task: TaskSpec, attempt: Int, cause: String?, state: RunState, resumedStartedAt: Int64? = nil, scheduling: RunEvents.Draft? = nil,
        signal: WorkflowValue? = nil, readyAt: ContinuousClock.Instant = .now
    ) async throws -> Step {
        let startedKey = RunEvents.taskKey(id.run, task.id, attempt: attempt, .started)
        var step = Step(task: task.id)
        // The permit first, then the claim: an attempt waiting for a permit is not `started`.
        let claimedAndDone = { () async throws -> (claim: [RunEvents.Draft], partlyRefused: Bool, startedUnixNano: Int64, result: Swift.Result<TaskResult, TaskFailure>)? in
            var partlyRefused = false
            var claim: [RunEvents.Draft] = []
            if resumedStartedAt == nil {
                let draft = RunEvents.task(id, task.id, attempt: attempt, .started, causes: cause.map { [$0] } ?? [], extra: [(key: "engine", value: .text(self.engineID))])
                claim = (scheduling.map { [$0] } ?? []) + [draft]
                // The claim is the `started`: a `scheduled` another engine recorded first (with
                // other causes) does not matter, a `started` it recorded first does.
                let refused = try await self.record(claim)
                guard !refused.contains(draft.key) else { return nil }
                self.metrics.task("started")
                // Ready (or due to retry) until claimed: the permit's wait and the claim's append.
                self.metrics.scheduled(after: .now - readyAt)
                claim.removeAll { refused.contains($0.key) }
                partlyRefused = !refused.isEmpty
            }
            let startedUnixNano = resumedStartedAt ?? Self.nowUnixNano()
            do {
                let done = try await self.execute(
                    task, id: id, attempt: attempt, context: state.context, startedUnixNano: startedUnixNano, signal: signal, children: state.children)
                // Every output within the limit, whatever produced it: an event must fit the server's payload limit.
                let bytes = done.output.json.utf8.count
                guard bytes <= Self.outputBytesMax else {
                    throw TaskFailure(message: "its output is \(bytes) bytes as JSON, over the \(Self.outputBytesMax)-byte limit")
                }
                return (claim, partlyRefused, startedUnixNano, .success(done))
            } catch let failure as TaskFailure {
                return (claim, partlyRefused, startedUnixNano, .failure(failure))
            }
        }
        guard let (claim, partlyRefused, startedUnixNano, result) = try await (task.kind.waits ? claimedAndDone() : permits.holding(claimedAndDone)) else {
            step.refused = true  // another engine's attempt
            return step
        }
        step.recorded += claim.map { RunEvents.recorded($0, timeUnixNano: startedUnixNano) }
        step.refused = partlyRefused
        // Cancelled with its run: the run records the attempt `cancelled`, not its kill as a
        // failure; work that completed is still recorded (and compensated with the run).
        if Task.isCancelled, case .failure = result { return step }
        let ms = WorkflowValue.number(String((Self.nowUnixNano() - startedUnixNano) / 1_000_000))
        let outcome: RunEvents.Draft
        switch result {
        case .success(let done):
            log("\(task.id): completed (attempt \(attempt))")
            outcome = RunEvents.task(
                id, task.id, attempt: attempt, .completed, causes: [startedKey] + done.causes, extra: [(key: "output", value: done.output), (key: "duration_ms", value: ms)])
        case .failure(let failure):
            log("\(task.id): failed (attempt \(attempt)): \(failure.message)")
            // Errors are kept to 4 KiB (a thrown error's description can be anything).
            outcome = RunEvents.task(
                id, task.id, attempt: attempt, .failed, causes: [startedKey],
                extra: [(key: "error", value: .text(String(failure.message.utf8.prefix(4_096)) ?? String(failure.message.prefix(1_024)))), (key: "duration_ms", value: ms)] + failure.details)
        }
        if try await record([outcome]).isEmpty {
            metrics.task(outcome.type == "workflow.task.completed" ? "completed" : "failed")
            step.recorded.append(RunEvents.recorded(outcome))
        } else {
            step.refused = true
        }
        return step
    }

    /// A task's output, and the events besides its `started` that caused its completion (the
    /// signal a wait received).
    struct TaskResult {
        var output: WorkflowValue
        var causes: [String] = []
    }

    /// The task names of a drive's children that wait for the run's cancel request, and for its
    /// next pause or resume.
    static let cancelWaiter = "\u{0}cancel"
    static let controlWaiter = "\u{0}control"

    public static func nowUnixNano() -> Int64 { Int64(Date().timeIntervalSince1970 * 1e9) }

    struct TaskFailure: Error {
        var message: String
        var details: [(key: String, value: WorkflowValue)] = []
    }

    /// The task's work; its output, or why it failed.
    /// `signal`: for a `wait_for_signal` task, the payload of its signal when the run's events
    /// already hold it (no look-up, no wait).
    private func execute(
        _ task: TaskSpec, id: RunEvents.RunID, attempt: Int, context: RunContext, startedUnixNano: Int64, signal known: WorkflowValue? = nil,
        children: [String: String] = [:]
    ) async throws -> TaskResult {
        func render(_ v: WorkflowValue) throws -> WorkflowValue {
            do { return try v.rendered(in: context) } catch { throw TaskFailure(message: "\(error)") }
        }
        switch task.kind {
        case .shell(let run, let env, let cwd, let output):
            let argv = try run.map { try render($0).text }
            var environment: [String: String] = [:]
            for (k, v) in env { environment[k] = try render(v).text }
            environment["BANYAN_RUN_ID"] = id.run
            // Per attempt, and per task across attempts (what makes a side effect idempotent).
            environment["BANYAN_ATTEMPT_KEY"] = RunEvents.taskKey(id.run, task.id, attempt: attempt, .started)
            environment["BANYAN_TASK_KEY"] = "run/\(id.run)/task/\(task.id)"
            var inputMembers: [(key: String, value: WorkflowValue)] = []
            for key in task.inputs.keys.sorted() { inputMembers.append((key, try render(task.inputs[key]!))) }
            environment["BANYAN_TASK_INPUTS"] = WorkflowValue.object(inputMembers).json
            var shell = ShellTask(argv: argv, env: environment, cwd: try cwd.map { try render($0).text }, timeout: task.timeout)
            shell.stdoutBytesMax = Self.outputBytesMax
            let reporter = ProgressReporter(engine: self, id: id, task: task.id, attempt: attempt)
            shell.onProgress = { text in reporter.report((try? JSONText.parse(Array(text.utf8), depthMax: 32)) ?? .text(text)) }
            let result: ShellTask.Result
            do {
                result = try await shell.run()
                try await reporter.finish()
            } catch let failure as ShellTask.Failure {
                try? await reporter.finish()
                throw TaskFailure(message: failure.message)  // it names the program
            } catch {
                try? await reporter.finish()
                throw TaskFailure(message: "cannot start \(argv.first ?? "?"): \(error)")
            }
            let details: [(key: String, value: WorkflowValue)] = [
                (key: "exit_code", value: .number(String(result.exitCode))), (key: "stderr", value: .text(String(decoding: result.stderr, as: UTF8.self))),
            ]
            if result.timedOut { throw TaskFailure(message: "timed out after \(task.timeout.map { "\($0)" } ?? "?") and was killed", details: details) }
            if result.signaled { throw TaskFailure(message: "killed by signal \(result.exitCode)", details: details) }
            guard result.exitCode == 0 else { throw TaskFailure(message: "exit code \(result.exitCode)", details: details) }
            switch output {
            case .text:
                var text = String(decoding: result.stdout, as: UTF8.self)
                if text.hasSuffix("\n") { text.removeLast() }
                return TaskResult(output: .text(Self.capped(text, truncated: result.truncated, keep: .tail)))
            case .json:
                guard !result.truncated else { throw TaskFailure(message: "its JSON output is larger than \(Self.outputBytesMax) bytes", details: details) }
                // Outputs sit 4 levels deep in an event page: keep room for that.
                do { return TaskResult(output: try JSONText.parse(result.stdout, depthMax: 56)) } catch { throw TaskFailure(message: "its output is not JSON: \(error)", details: details) }
            }
        case .http(let spec):
            var headers: [HTTPTask.HeaderField] = []
            for name in spec.headers.keys.sorted() { headers.append(.init(name: name, value: try render(spec.headers[name]!).text)) }
            // What lets the receiver do the work once across attempts and engines.
            for (name, value) in [("Banyan-Task-Key", "run/\(id.run)/task/\(task.id)"), ("Banyan-Attempt-Key", RunEvents.taskKey(id.run, task.id, attempt: attempt, .started))]
            where !spec.headers.keys.contains(where: { $0.lowercased() == name.lowercased() }) {
                headers.append(.init(name: name, value: value))
            }
            let http = HTTPTask(
                method: spec.method, url: try render(spec.url).text, headers: headers, body: try spec.body.map { try render($0).json }, expect: spec.expect,
                timeout: task.timeout ?? Self.httpTimeoutDefault, bodyBytesMax: Self.outputBytesMax)
            return TaskResult(output: try http.output(try await Self.within(http.timeout, "the request") { try await http.send() }))
        case .sleep(let duration):
            // Due `duration` after the attempt's `started`, by the wall clock (durable across restarts).
            let remaining = startedUnixNano + Self.milliseconds(duration) * 1_000_000 - Self.nowUnixNano()
            if remaining > 0 { try await Task.sleep(for: .nanoseconds(remaining)) }
            return TaskResult(output: .object([(key: "slept_ms", value: .number(String(Self.milliseconds(duration))))]))
        case .waitForSignal(let name):
            let key = RunEvents.signalKey(id.run, name)
            if let known { return TaskResult(output: known, causes: [key]) }
            let deadline = task.timeout.map { startedUnixNano + Self.milliseconds($0) * 1_000_000 }
            guard let signal = try await signals.wait(for: key, deadlineUnixNano: deadline) else {
                try Task.checkCancellation()
                throw TaskFailure(message: "no signal \(name) within \(task.timeout!)")
            }
            return TaskResult(output: signal["payload"] ?? .null, causes: [key])
        case .swift(let name):
            guard let function = functions[name] else {
                throw TaskFailure(message: "this engine has no function \(name) (it has: \(functions.keys.sorted().joined(separator: ", ")))")
            }
            var inputMembers: [(key: String, value: WorkflowValue)] = []
            for key in task.inputs.keys.sorted() { inputMembers.append((key, try render(task.inputs[key]!))) }
            let reporter = ProgressReporter(engine: self, id: id, task: task.id, attempt: attempt)
            let call = FunctionCall(
                run: id.run, task: task.id, attempt: attempt, attemptKey: RunEvents.taskKey(id.run, task.id, attempt: attempt, .started), inputs: .object(inputMembers),
                progress: { reporter.report($0) })
            do {
                let output = try await Self.within(task.timeout, "the function") { try await function(call) }
                try await reporter.finish()
                return TaskResult(output: output)
            } catch let failure as TaskFailure {
                try? await reporter.finish()
                throw failure
            } catch {
                try? await reporter.finish()
                throw TaskFailure(message: "\(error)")
            }
        case .subWorkflow(let name):
            guard let text = children[name] else { throw TaskFailure(message: "the run holds no definition of workflow \(name)") }
            var inputs: [String: WorkflowValue] = [:]
            for key in task.inputs.keys.sorted() { inputs[key] = try render(task.inputs[key]!) }
            // One child run per attempt, its id derived from the attempt: starting it again (a
            // resumed attempt) is the same run, which this drive continues from its events.
            let attemptKey = RunEvents.taskKey(id.run, task.id, attempt: attempt, .started)
            let child = "sub-" + RunEvents.version(of: attemptKey)
            do {
                _ = try await start(definition: text, inputs: inputs, run: child, children: children, parent: attemptKey)
            } catch let error as EngineError {
                throw TaskFailure(message: "sub-workflow \(name): \(error)")
            }
            log("\(task.id): runs sub-workflow \(name) as run \(child)")
            switch try await drive(run: child) {
            case .completed:
                let outputs = try await refold(child).state
                var members: [(key: String, value: WorkflowValue)] = []
                for t in outputs.definition.tasks { if let output = outputs.context.outputs[t.id] { members.append((t.id, output)) } }
                var output = WorkflowValue.object([(key: "run", value: .text(child)), (key: "outputs", value: .object(members))])
                if output.json.utf8.count > Self.outputBytesMax {
                    // The child's work is done and recorded: keep the completion, not every output
                    // (they stay in the child run's events).
                    output = .object([(key: "run", value: .text(child)), (key: "outputs_truncated", value: .bool(true))])
                }
                return TaskResult(output: output, causes: [RunEvents.runKey(child, "completed")])
            case .failed(let failedTask, let error):
                throw TaskFailure(
                    message: "sub-workflow \(name) (run \(child)) failed at \(failedTask): \(error)", details: [(key: "child_run", value: .text(child))])
            case .cancelled(let reason):
                throw TaskFailure(message: "sub-workflow \(name) (run \(child)) was cancelled: \(reason)", details: [(key: "child_run", value: .text(child))])
            }
        }
    }

    enum Keep { case head, tail }

    /// `text` as an output: when it was cut already, or is over the limit once JSON-encoded
    /// (escaping can make text up to 6x longer), its head or tail within the limit, marked.
    static func capped(_ text: String, truncated: Bool, keep: Keep) -> String {
        let encoded = WorkflowValue.text(text).json.utf8.count
        guard encoded > outputBytesMax || truncated else { return text }
        let count = max(0, text.unicodeScalars.count * outputBytesMax / max(encoded, 1) - 32)
        let scalars = keep == .tail ? text.unicodeScalars.suffix(count) : text.unicodeScalars.prefix(count)
        return "[output truncated] " + String(String.UnicodeScalarView(scalars))
    }

    /// An http task's answer must come within this when the task names no `timeout`.
    public static let httpTimeoutDefault = Duration.seconds(30)

    /// `body`'s result, or a failure at `timeout`: then `body` is cancelled, and the attempt
    /// fails at once even when `body` ignores cancellation (it then runs on, detached, and what
    /// it returns is dropped).
    static func within<T: Sendable>(_ timeout: Duration?, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        guard let timeout else { return try await body() }
        let race = Race()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
                let work = Task {
                    let outcome: Swift.Result<T, any Error>
                    do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
                    guard race.claim() else { return }
                    race.timer.withLock { $0?.cancel() }  // no sleeper left behind per attempt
                    c.resume(with: outcome)
                }
                race.work.withLock { $0 = work }
                if Task.isCancelled { work.cancel() }  // cancelled before the handler could see it
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    guard race.claim() else { return }
                    work.cancel()
                    c.resume(throwing: TaskFailure(message: "\(what) timed out after \(timeout)"))
                }
                race.timer.withLock { $0 = timer }
                if race.claimed { timer.cancel() }  // the work ended before the timer was stored
            }
        } onCancel: {
            race.work.withLock { $0?.cancel() }
        }
    }

    /// Who ends a `within` first: the work or the timer.
    final class Race: Sendable {
        private let flag = Atomic(false)
        let work = Mutex<Task<Void, Never>?>(nil)
        let timer = Mutex<Task<Void, Never>?>(nil)
        /// True for the first caller only.
        func claim() -> Bool { flag.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged }
        var claimed: Bool { flag.load(ordering: .acquiring) }
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    /// Records how the run ended: the compensations of a failed run (latest completion first),
    /// then `workflow.run.completed` or `.failed`.
    /// A compensation step is claimed like an attempt (`compensating` names this engine): one
    /// whose claim another engine recorded while this one drove the run is theirs, and this
    /// engine stops there; one recorded before (`inherited`: that engine stopped) is run again.
    /// Returns false when another engine holds a compensation: the caller reads on and calls again.
    private func finish(_ id: RunEvents.RunID, _ state: RunState, _ outcome: RunState.Outcome, keys: Keys, inherited: Set<String>, finished: Set<String>) async throws -> Bool {
        switch outcome {
        case .completed:
            guard !finished.contains("completed") else { return true }
            let causes = Array(state.completionOrder.compactMap { keys.completed[$0] }.suffix(Self.causesMax))
            try await record([RunEvents.finished(id, "completed", causes: causes)])
            log("run \(id.run): completed")
        case .failed, .cancelled:
            // Both undo what completed, latest completion first (SAGA).
            let end: String
            var last: String?
            switch outcome {
            case .failed(let task, _):
                end = "failed"
                last = keys.latest(task)
            default:
                end = "cancelled"
                last = RunEvents.runKey(id.run, "cancel_requested")
            }
            guard !finished.contains(end) else { return true }
            var unfinished: [String] = []
            for done in state.compensationOrder {
                guard case .task(let step)? = state.definition.task(done)?.compensate else { continue }
                let key = { (state: String) in RunEvents.compensationKey(id.run, done, state) }
                if keys.all.contains(key("compensated")) {
                    last = key("compensated")  // done before a crash
                    continue
                }
                if keys.all.contains(key("compensation_failed")) {
                    last = key("compensation_failed")
                    unfinished.append(done)
                    continue
                }
                if keys.all.contains(key("compensating")) {
                    // Claimed before: by an engine that stopped (take it over), or one still at it.
                    guard try await stopped(claimant: keys.compensationClaimant[done], key: key("compensating"), inherited: inherited) else { return false }
                } else {
                    let claim = RunEvents.compensation(
                        id, done, "compensating", causes: [last, keys.completed[done]].compactMap { $0 }, extra: [(key: "engine", value: .text(engineID))])
                    guard try await record([claim]).isEmpty else {
                        log("run \(id.run): another engine is compensating it")
                        return false
                    }
                }
                var failure: TaskFailure?
                for attempt in 1...max(1, step.retry.maxAttempts) {
                    if attempt > 1 { try await Task.sleep(for: step.retry.backoff(before: attempt)) }
                    do {
                        _ = try await permits.holding {
                            try await self.execute(step, id: id, attempt: attempt, context: state.context, startedUnixNano: Self.nowUnixNano(), children: state.children)
                        }
                        failure = nil
                        break
                    } catch let f as TaskFailure {
                        failure = f
                    }
                }
                if let failure {
                    // Reported, never dropped: recorded, named in the run's failure, and the next one still runs.
                    try await record([RunEvents.compensation(id, done, "compensation_failed", causes: [key("compensating")], extra: [(key: "error", value: .text(failure.message))] + failure.details)])
                    last = key("compensation_failed")
                    unfinished.append(done)
                    log("\(done): compensation failed: \(failure.message)")
                } else {
                    try await record([RunEvents.compensation(id, done, "compensated", causes: [key("compensating")])])
                    last = key("compensated")
                    log("\(done): compensated")
                }
            }
            let compensations = (key: "compensations_failed", value: WorkflowValue.array(unfinished.map(WorkflowValue.text)))
            switch outcome {
            case .failed(let task, let error):
                try await record([RunEvents.finished(
                    id, "failed", causes: [last].compactMap { $0 }, extra: [(key: "task", value: .text(task)), (key: "error", value: .text(error)), compensations])])
                log("run \(id.run): failed at \(task): \(error)")
            case .cancelled(let reason):
                try await record([RunEvents.finished(id, "cancelled", causes: [last].compactMap { $0 }, extra: [(key: "reason", value: .text(reason)), compensations])])
                log("run \(id.run): cancelled: \(reason)")
            case .completed: break
            }
        }
        return true
    }

    /// Appends `drafts` (batched with what other runs record meanwhile, `Appender`). A key
    /// already recorded with the same content is a duplicate; with other content (another engine
    /// recorded that transition first) a 409, which also means the transition is recorded: the
    /// log decides. Returns the keys refused so.
    @discardableResult
    func record(_ drafts: [RunEvents.Draft]) async throws -> Set<String> {
        try await appender.record(drafts)
    }

    func append(_ body: [UInt8]) async throws {
        try await Self.append(body, client: client, log: log)
    }

    /// One append, tried again (the keys make that safe) while the server is overloaded, not
    /// the leader for a moment, or out of reach: up to `appendTries` times, waiting 50 ms to 2 s.
    static func append(_ body: [UInt8], client: BanyanHTTPClient, log: @Sendable (String) -> Void) async throws {
        var pause = Duration.milliseconds(50)
        for attempt in 1...appendTries {
            do {
                try await client.appendStored(batch: body)
                return
            } catch let error as BanyanClientError where (error.status == 0 || error.status == 503) && attempt < appendTries {
                log("append failed (\(error)); trying again in \(pause)")
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(2))
            }
        }
    }

    /// A drive's work attempts, each run in a task of its own so that a pause with `now` can
    /// stop them (and only them: timers, waits and child runs go on).
    final class Interrupts: Sendable {
        private struct State {
            var running: [String: Task<Step, any Error>] = [:]
            var interrupted: Set<String> = []
            /// A pause with `now` holds: an attempt that begins now is stopped at once.
            var stopping = false
        }
        private let state = Mutex(State())

        /// The attempt's step; a `Step` with nothing recorded when a pause stopped it before it
        /// recorded anything (waiting for a permit, sleeping through a retry's backoff).
        func run(_ task: String, _ body: @escaping @Sendable () async throws -> Step) async throws -> Step {
            let work = Task { try await body() }
            let stopNow = state.withLock { s -> Bool in
                s.running[task] = work
                s.interrupted.remove(task)
                if s.stopping { s.interrupted.insert(task) }
                return s.stopping
            }
            if stopNow { work.cancel() }
            defer { state.withLock { _ = $0.running.removeValue(forKey: task) } }
            do {
                return try await withTaskCancellationHandler { try await work.value } onCancel: { work.cancel() }
            } catch is CancellationError where !Task.isCancelled && state.withLock({ $0.interrupted.contains(task) }) {
                return Step(task: task)
            }
        }

        /// Stops every running attempt, and those that begin until `resume()`; returns their tasks.
        func interrupt() -> Set<String> {
            let running = state.withLock { s -> [String: Task<Step, any Error>] in
                s.stopping = true
                s.interrupted.formUnion(s.running.keys)
                return s.running
            }
            for work in running.values { work.cancel() }
            return Set(running.keys)
        }

        /// The pause with `now` is over (resumed): attempts run again.
        func resume() { state.withLock { $0.stopping = false } }

        /// Whether the attempt of `task` that just ended was interrupted (asked once).
        func wasInterrupted(_ task: String) -> Bool {
            state.withLock { $0.interrupted.remove(task) != nil }
        }
    }

    /// Set once the run has an outcome: retries waiting through their backoff then give up.
    final class StopFlag: Sendable {
        private let flag = Atomic(false)
        func set() { flag.store(true, ordering: .releasing) }
        func clear() { flag.store(false, ordering: .releasing) }
        var isSet: Bool { flag.load(ordering: .acquiring) }
    }

    /// The keys of the latest event of each task, and of each completed task's completion.
    struct Keys {
        var completed: [String: String] = [:]
        var last: [String: String] = [:]
        /// Every key of the run recorded so far.
        var all: Set<String> = []
        /// When each task's latest attempt started (Unix nanoseconds).
        var startedAt: [String: Int64] = [:]
        /// The signals the run has received: their payloads, by name.
        var signals: [String: WorkflowValue] = [:]
        /// The run's cancel request (its payload), once read.
        var cancelRequest: WorkflowValue?
        /// The run as a whole (its pauses and resumes among it), and whether the latest pause
        /// stops running attempts too.
        var lifecycle = RunLifecycle()
        var pauses: Int { lifecycle.pauses }
        var resumes: Int { lifecycle.resumes }
        var pauseNow = false
        /// No new attempt starts: paused, and not being cancelled (a cancel goes on while paused).
        var paused: Bool { pauses > resumes && cancelRequest == nil }
        /// The engine that claimed each task's latest attempt, and each compensation.
        var claimant: [String: String] = [:]
        var compensationClaimant: [String: String] = [:]

        mutating func note(_ event: RunEvents.Recorded) {
            if let key = event.key { all.insert(key) }
            if event.type == "workflow.run.signaled", let name = event.payload["signal"]?.stringValue {
                signals[name] = event.payload["payload"] ?? .null
            }
            if event.type == "workflow.run.cancel_requested" { cancelRequest = event.payload }
            if event.type == "workflow.run.paused", let n = event.payload["pause"]?.intValue, n > pauses { pauseNow = event.payload["now"] == .bool(true) }
            if event.type.hasPrefix("workflow.run.") { lifecycle.apply(event) }
            guard let key = event.key, let task = event.payload["task"]?.stringValue, event.type.hasPrefix("workflow.task.") else { return }
            if event.payload["compensation"] != nil {
                if event.type == "workflow.task.compensating" { compensationClaimant[task] = event.payload["engine"]?.stringValue }
                return
            }
            last[task] = key
            if event.type == "workflow.task.completed", completed[task] == nil { completed[task] = key }
            if event.type == "workflow.task.started" {
                startedAt[task] = event.timeUnixNano
                claimant[task] = event.payload["engine"]?.stringValue
            }
        }

        func latest(_ task: String) -> String? { last[task] }

        /// The payload of the signal a `wait_for_signal` task waits for, if the run has it.
        func signal(for task: TaskSpec) -> WorkflowValue? {
            if case .waitForSignal(let name) = task.kind { signals[name] } else { nil }
        }
    }
}

/// Definitions already parsed, by their text: runs of one workflow share it, and parsing YAML is
/// most of the cost of loading a run. At most `entriesMax` are kept (then the cache starts over).
final class DefinitionCache: Sendable {
    static let entriesMax = 256
    private let entries = Mutex<[String: WorkflowDefinition]>([:])

    func parse(_ text: String) throws(DefinitionError) -> WorkflowDefinition {
        if let hit = entries.withLock({ $0[text] }) { return hit }
        let definition = try DefinitionParser.parse(text)
        entries.withLock { e in
            if e.count >= Self.entriesMax { e.removeAll() }
            e[text] = definition
        }
        return definition
    }
}

/// Reads a run's stream from the log, page by page, remembering where it got to.
struct RunReader {
    static let definitions = DefinitionCache()
    let client: BanyanHTTPClient
    let run: String
    var after: UInt64 = 0
    /// The request, once read (it never changes).
    private var known: RunEvents.Recorded? = nil

    init(client: BanyanHTTPClient, run: String) {
        self.client = client
        self.run = run
    }

    /// The run's identity and its state before any transition: the definition and inputs its
    /// request recorded.
    mutating func load() async throws -> (RunEvents.RunID, RunState) {
        guard let request = try await request() else { throw Engine.EngineError.unknownRun(run) }
        let definition: WorkflowDefinition
        do { definition = try Self.definitions.parse(request.payload["definition"]?.stringValue ?? "") } catch { throw Engine.EngineError.definition(error) }
        var inputs: [String: WorkflowValue] = [:]
        if case .object(let members)? = request.payload["inputs"] { for (k, v) in members { inputs[k] = v } }
        let id = RunEvents.RunID(run: run, workflow: definition.name, version: request.payload["version"]?.stringValue ?? "")
        var state = RunState(definition: definition, inputs: inputs)
        if case .object(let members)? = request.payload["children"] {
            for (name, text) in members { state.children[name] = text.stringValue }
        }
        // A retried run: the tasks its failed run completed, with their outputs.
        for (task, kept) in Self.kept(request) { state.apply(.completed(task, output: kept.output)) }
        return (id, state)
    }

    /// A retried run's kept tasks, in their completion order: the output and the key of the
    /// failed run's completion.
    static func kept(_ request: RunEvents.Recorded) -> [(task: String, (output: WorkflowValue, key: String))] {
        guard case .object(let members)? = request.payload["kept"] else { return [] }
        return members.compactMap { m in m.value["key"]?.stringValue.map { (m.key, (m.value["output"] ?? .null, $0)) } }
    }

    /// The run's identity from its request, without its definition: what signals and cancel
    /// requests need, for YAML and Swift runs alike.
    mutating func identity() async throws -> RunEvents.RunID {
        guard let request = try await request() else { throw Engine.EngineError.unknownRun(run) }
        return RunEvents.RunID(run: run, workflow: request.payload["workflow"]?.stringValue ?? "", version: request.payload["version"]?.stringValue ?? "")
    }

    /// The run's request (nil: no such run). The request is the run's first event: `next` then
    /// reads the stream from there, not from the start of the log.
    mutating func request() async throws -> RunEvents.Recorded? {
        if let known { return known }
        guard let bytes = try await client.event(key: RunEvents.runKey(run, "requested")) else { return nil }
        let value: WorkflowValue
        do { value = try JSONText.parse(bytes) } catch { throw Engine.EngineError.log("\(error)") }
        guard let type = value["type"]?.stringValue, type == "workflow.run.requested" else { return nil }
        var id: UInt64 = 0
        if case .number(let n)? = value["id"] { id = UInt64(n) ?? 0 }
        if id > 0 { after = max(after, id - 1) }
        var time: Int64 = 0
        if case .number(let n)? = value["time_unix_nano"] { time = Int64(n) ?? 0 }
        known = RunEvents.Recorded(id: id, type: type, key: value["key"]?.stringValue, payload: value["payload"] ?? .null, timeUnixNano: time)
        return known
    }

    /// The run's events appended since the last call, in log order.
    mutating func next() async throws -> [RunEvents.Recorded] {
        var events: [RunEvents.Recorded] = []
        after = try await RunEvents.readPages(client, after: after, stream: RunEvents.stream(run), limit: 1_000) { events += $0 }
        return events
    }
}

/// Where a run stands, read from its events (`banyan workflow status`, `GET /v1/runs/{id}`).
public struct RunStatus: Sendable {
    public var run: String
    public var workflow: String
    public var version: String
    /// Its state, times and error as a whole.
    public var lifecycle = RunLifecycle()
    public var state: String { lifecycle.state.rawValue }
    public var error: String? { lifecycle.error }
    public var startedAtUnixNano: Int64? { lifecycle.startedAtUnixNano }
    public var endedAtUnixNano: Int64? { lifecycle.endedAtUnixNano }
    public var inputs: WorkflowValue = .object([])
    /// A child run's parent attempt.
    public var parent: String?
    /// The server's time of its request.
    public var requestedAtUnixNano: Int64 = 0
    public struct Task: Sendable {
        public var id: String
        /// The latest state recorded, `skipped` with its reason, `interrupted`, or `pending`.
        public var state: String
        public var attempts: Int
        /// Of the latest finished attempt, when recorded.
        public var durationMs: Int?
        public var error: String?
        public var history: [Attempt] = []
        /// The tasks it waits for (`needs` and those its `start_when` names), by name; none for
        /// a Swift workflow's steps, which declare none.
        public var needs: [String] = []
    }
    /// One attempt of a task, as its events recorded it.
    public struct Attempt: Sendable {
        public var number: Int
        /// Its latest state (`scheduled`, `started`, `completed`, `failed`, `cancelled`).
        public var state: String
        public var startedAtUnixNano: Int64?
        public var endedAtUnixNano: Int64?
        public var durationMs: Int?
        public var error: String?
        public var output: WorkflowValue?
        /// The engine whose claim the log took.
        public var engine: String?
    }
    public var tasks: [Task]

    /// Applies one of the run's events that is not a task's transition: run-level states and
    /// times, and each attempt's history.
    mutating func note(_ event: RunEvents.Recorded, attempts: inout [String: [Attempt]]) {
        switch event.type {
        case _ where event.type.hasPrefix("workflow.run."): lifecycle.apply(event)
        default:
            guard event.type.hasPrefix("workflow.task."), event.payload["compensation"] == nil, let task = event.payload["task"]?.stringValue,
                let number = event.payload["attempt"]?.intValue, number > 0,
                let kind = TaskState(rawValue: String(event.type.dropFirst("workflow.task.".count))), kind != .progress, kind != .retrying
            else { return }
            var list = attempts[task] ?? []
            if list.last?.number != number { list.append(Attempt(number: number, state: kind.rawValue)) }
            var a = list[list.count - 1]
            // A late duplicate claim never moves a finished attempt back.
            if a.endedAtUnixNano == nil { a.state = kind.rawValue }
            switch kind {
            case .started:
                a.startedAtUnixNano = a.startedAtUnixNano ?? event.timeUnixNano
                a.engine = a.engine ?? event.payload["engine"]?.stringValue
            case .completed, .failed, .cancelled:
                a.endedAtUnixNano = a.endedAtUnixNano ?? event.timeUnixNano
                a.durationMs = event.payload["duration_ms"]?.intValue
                a.error = kind == .failed ? event.payload["error"]?.stringValue : nil
                if kind == .completed { a.output = event.payload["output"] }
            default: break
            }
            list[list.count - 1] = a
            attempts[task] = list
        }
    }
}

extension Engine {
    /// Reads a run's events and says where it stands; nothing is recorded.
    public func status(run: String) async throws -> RunStatus {
        var reader = RunReader(client: client, run: run)
        guard let request = try await reader.request() else { throw EngineError.unknownRun(run) }
        var status = RunStatus(
            run: run, workflow: request.payload["workflow"]?.stringValue ?? "", version: request.payload["version"]?.stringValue ?? "",
            inputs: request.payload["inputs"] ?? .object([]), parent: request.payload["parent"]?.stringValue, requestedAtUnixNano: request.timeUnixNano, tasks: [])
        var attempts: [String: [RunStatus.Attempt]] = [:]
        if request.payload["code"] == .bool(true) {
            // A Swift workflow's run: its steps as its events name them, in the order they first appear.
            var order: [String] = []
            for event in try await reader.next() {
                status.note(event, attempts: &attempts)
                if let step = event.payload["task"]?.stringValue, attempts[step] != nil, !order.contains(step) { order.append(step) }
            }
            status.tasks = order.map { step in
                let history = attempts[step] ?? []
                let shown = history.contains { $0.state == "completed" } ? "completed" : history.last?.state ?? "pending"
                let last = history.last { $0.endedAtUnixNano != nil }
                return RunStatus.Task(
                    id: step, state: shown, attempts: history.count { $0.startedAtUnixNano != nil }, durationMs: last?.durationMs,
                    error: shown == "failed" ? history.last?.error : nil, history: history)
            }
            return status
        }
        var (_, state) = try await reader.load()
        for event in try await reader.next() {
            if let t = RunEvents.transition(event) { state.apply(t) }
            status.note(event, attempts: &attempts)
        }
        state.settle()
        status.tasks = state.definition.tasks.map { task -> RunStatus.Task in
            let p = state.progress(of: task.id) ?? RunState.Progress()
            let shown = p.skipped != nil ? "skipped (\(p.skipped!))" : p.lastInterrupted && p.state == .failed ? "interrupted" : p.state?.rawValue ?? "pending"
            let history = attempts[task.id] ?? []
            return RunStatus.Task(
                id: task.id, state: shown, attempts: p.attempts, durationMs: history.last { $0.endedAtUnixNano != nil }?.durationMs,
                error: p.state == .failed ? p.error : nil, history: history, needs: task.dependencies.sorted())
        }
        return status
    }
}

extension Engine {
    public enum SignalError: Error, Sendable, CustomStringConvertible {
        case badName(String)
        case runEnded(String, String)
        /// The run is in a state that does not allow the request (the words say which).
        case wrongState(String)
        case alreadySent(String, String)

        public var description: String {
            switch self {
            case .badName(let name): "\"\(name.prefix(80))\" is not a signal name: 1-\(WorkflowLimits().nameBytesMax) letters, digits, _ and -"
            case .runEnded(let run, let state): "run \(run) has already \(state)"
            case .wrongState(let why): why
            case .alreadySent(let name, let run): "signal \(name) was already sent to run \(run) with another payload (one signal of a name per run)"
            }
        }
    }

    /// Records signal `name` with `payload` for `run`: a `wait_for_signal` task waiting for that
    /// name completes with the payload as its output (one waiting later completes at once).
    /// Sending the same signal again is a no-op (returns false), also once the run has ended;
    /// refused for an unknown or ended run, and for a name already sent with another payload.
    @discardableResult
    public func signal(run: String, name: String, payload: WorkflowValue) async throws -> Bool {
        guard WorkflowLimits.isName(name, bytesMax: WorkflowLimits().nameBytesMax) else {
            throw SignalError.badName(name)
        }
        var reader = RunReader(client: client, run: run)
        let id = try await reader.identity()
        let draft = RunEvents.signal(id, name, payload: payload)
        if let bytes = try await client.event(key: draft.key) {
            let sent: WorkflowValue
            do { sent = try JSONText.parse(bytes) } catch { throw EngineError.log("\(error)") }
            guard sent["payload"]?["payload"] == payload else { throw SignalError.alreadySent(name, run) }
            return false
        }
        if let state = try await ended(run) { throw SignalError.runEnded(run, state) }
        do {
            try await append(Array(WorkflowValue.array([draft.json]).json.utf8))
        } catch let error as BanyanClientError where error.status == 409 {
            throw SignalError.alreadySent(name, run)
        }
        return true
    }
}

extension Engine {
    /// How the run ended (`completed`, `failed`, `cancelled`), or nil while it has not.
    func ended(_ run: String) async throws -> String? {
        for state in RunLifecycle.State.allCases where state.ended {
            if try await client.event(key: RunEvents.runKey(run, state.rawValue)) != nil { return state.rawValue }
        }
        return nil
    }

    /// Starts a failed run again from its failed tasks, as a new run (`retry-<hash of run>`)
    /// whose request holds the same definition and inputs and the outputs of the tasks that
    /// completed and were not compensated (`kept`); those do not run again. Once per run: asking
    /// again answers the same new run (`recorded` false); to retry again, retry that run.
    /// Refused for an unknown run and one that has not failed.
    public func retry(run: String) async throws -> (run: String, recorded: Bool) {
        var reader = RunReader(client: client, run: run)
        guard let request = try await reader.request() else { throw EngineError.unknownRun(run) }
        guard request.payload["code"] == nil else { throw SignalError.wrongState("run \(run) is a Swift run: retry it from its program") }
        let retryID = "retry-" + RunEvents.version(of: run)
        if try await client.event(key: RunEvents.runKey(retryID, "requested")) != nil { return (retryID, false) }
        // A retry of a retry keeps what the first run completed, too.
        var completed = RunReader.kept(request).map { (task: $0.task, key: $0.1.key, output: $0.1.output) }
        var compensated: Set<String> = []
        var failed = false
        for event in try await reader.next() {
            guard let key = event.key else { continue }
            switch event.type {
            case "workflow.run.failed": failed = true
            case "workflow.task.completed" where event.payload["compensation"] == nil:
                if let task = event.payload["task"]?.stringValue, !completed.contains(where: { $0.task == task }) {
                    completed.append((task, key, event.payload["output"] ?? .null))
                }
            case "workflow.task.compensated":
                // A compensation that failed left the task's effect in place: it is kept.
                if let task = event.payload["task"]?.stringValue { compensated.insert(task) }
            default: break
            }
        }
        guard failed else {
            throw SignalError.wrongState("run \(run) is \(try await ended(run) ?? "not ended"), not failed: only a failed run is retried")
        }
        let kept = completed.filter { !compensated.contains($0.task) }
        var payload = request.payload
        guard case .object(var members) = payload else { throw EngineError.log("run \(run)'s request has no payload") }
        members.removeAll { ["run", "retry_of", "kept", "parent"].contains($0.key) }
        members.insert((key: "run", value: .text(retryID)), at: 0)
        members.append((key: "retry_of", value: .text(run)))
        members.append((key: "kept", value: .object(kept.map { (key: $0.task, value: .object([(key: "output", value: $0.output), (key: "key", value: .text($0.key))])) })))
        payload = .object(members)
        let draft = RunEvents.Draft(
            type: "workflow.run.requested", key: RunEvents.runKey(retryID, "requested"), stream: RunEvents.stream(retryID),
            parentKeys: [RunEvents.runKey(run, "failed")], payload: payload)
        return (retryID, try await appendNew(draft))
    }

    /// Records a command on a run whose key says it may happen once (a pause, a resume, a cancel
    /// request, a retry): false when the log already has the key with other content (another
    /// caller got there first, which is the same outcome).
    private func appendNew(_ draft: RunEvents.Draft) async throws -> Bool {
        do {
            try await append(Array(WorkflowValue.array([draft.json]).json.utf8))
        } catch let error as BanyanClientError where error.status == 409 {
            return false
        }
        return true
    }

    /// Pauses `run`: the engines driving it start no new attempt (running ones finish; with
    /// `now`, their work attempts stop and run again once resumed). Pausing a paused run is a
    /// no-op (returns false); refused for an unknown run, one that has ended, and one whose
    /// cancel was requested.
    @discardableResult
    public func pause(run: String, now: Bool) async throws -> Bool {
        let (id, keys) = try await control(run)
        if keys.pauses > keys.resumes { return false }
        return try await appendNew(RunEvents.paused(id, keys.pauses + 1, now: now))
    }

    /// Resumes a paused `run` where it stopped. Resuming a run that is not paused is a no-op
    /// (returns false); refused for an unknown run and one that has ended.
    @discardableResult
    public func resume(run: String) async throws -> Bool {
        let (id, keys) = try await control(run, cancelling: true)
        guard keys.pauses > keys.resumes else { return false }
        return try await appendNew(RunEvents.resumed(id, keys.pauses))
    }

    /// The run's identity and its pauses, resumes and cancel request, read from its events;
    /// refused for a run that has ended (and, unless `cancelling`, one being cancelled).
    private func control(_ run: String, cancelling: Bool = false) async throws -> (RunEvents.RunID, Keys) {
        var reader = RunReader(client: client, run: run)
        guard let request = try await reader.request() else { throw EngineError.unknownRun(run) }
        // Swift runs are driven by their program, which reads no pauses.
        guard request.payload["code"] == nil else { throw SignalError.wrongState("run \(run) is a Swift run: it cannot be paused") }
        let id = try await reader.identity()
        var keys = Keys()
        for event in try await reader.next() {
            keys.note(event)
            if let end = RunLifecycle.State(endType: event.type) { throw SignalError.runEnded(run, end.rawValue) }
        }
        if !cancelling, keys.cancelRequest != nil { throw SignalError.wrongState("run \(run) is being cancelled") }
        return (id, keys)
    }

    /// The run's request event (nil: no such run).
    public func request(of run: String) async throws -> RunEvents.Recorded? {
        var reader = RunReader(client: client, run: run)
        return try await reader.request()
    }

    /// Records a request to cancel `run` (once per run: asking again is a no-op and returns
    /// false, whatever the reason). The engine driving the run stops its running attempts,
    /// records them `cancelled`, compensates the completed tasks, and records
    /// `workflow.run.cancelled`. Refused for an unknown run and one that has ended.
    @discardableResult
    public func cancel(run: String, reason: String) async throws -> Bool {
        var reader = RunReader(client: client, run: run)
        let id = try await reader.identity()
        if try await client.event(key: RunEvents.runKey(run, "cancel_requested")) != nil { return false }
        if let state = try await ended(run) { throw SignalError.runEnded(run, state) }
        return try await appendNew(RunEvents.cancelRequested(id, reason: String(reason.prefix(1_024))))
    }
}
