/// One run as the engine decides it: built from the run's transitions (its events, in log order),
/// it says which tasks may be scheduled now, which will never run, whether a failed attempt is
/// retried, how the run ends, and in which order completed tasks compensate. Pure: no clock, no
/// I/O, so replaying the same events gives the same decisions on any engine.
public struct RunState: Sendable {
    public let definition: WorkflowDefinition
    /// What decisions read of each task, by its index in the definition, so they neither look
    /// tasks up by name nor copy whole `TaskSpec`s (an engine decides after every transition).
    private let plan: Plan
    public private(set) var context: RunContext
    /// The definitions the run's `sub_workflow` tasks name, by name, as its request recorded them.
    public var children: [String: String] = [:]
    /// Where each task stands, by its index in the definition (`index(of:)`).
    public private(set) var progress: [Progress]
    /// The same by task id (built on each call: for status and tests, not for decision loops).
    public var tasks: [String: Progress] { Dictionary(zip(plan.ids, progress), uniquingKeysWith: { a, _ in a }) }
    /// Completed tasks, in completion order (compensation runs them backwards).
    public private(set) var completionOrder: [String] = []

    /// Where one task stands.
    public struct Progress: Sendable, Hashable {
        /// Attempts started so far.
        public var attempts = 0
        /// Of those, attempts a pause with `now` stopped (`interrupted`): they do not count
        /// against `max_attempts`, and the next attempt starts without a backoff.
        public var interrupted = 0
        /// The latest attempt was interrupted by a pause.
        public var lastInterrupted = false
        /// The latest state recorded (nil: nothing yet).
        public var state: TaskState?
        /// Why the latest attempt failed.
        public var error: String?
        /// It will not run: a task it needs was skipped or failed with `on_failure: continue`, or
        /// all its dependencies are done and its `start_when` does not hold.
        public var skipped: String?
    }

    /// A recorded change of one task.
    public enum Transition: Sendable, Hashable {
        case scheduled(String)
        case started(String)
        case completed(String, output: WorkflowValue)
        case failed(String, error: String)
        /// Stopped by a pause with `now`: failed, to be retried once the run resumes.
        case interrupted(String)
        case retrying(String)
        case cancelled(String)
    }

    public enum Outcome: Sendable, Hashable {
        case completed
        /// A task failed for good under `on_failure: fail`.
        case failed(task: String, error: String)
        /// Cancelled on request (`banyan workflow cancel`), with the reason given.
        case cancelled(reason: String)
    }

    /// What to do after an attempt failed.
    public enum RetryDecision: Sendable, Hashable {
        case retry(attempt: Int, after: Duration)
        case giveUp
    }

    private struct Plan: Sendable {
        var index: [String: Int] = [:]
        var ids: [String] = []
        /// Indexes of the tasks each one needs, and of those its `needs` and `start_when` name.
        var needs: [[Int]] = []
        var dependencies: [[Int]] = []
        var startWhen: [Condition?] = []
        var failsRun: [Bool] = []
        var maxAttempts: [Int] = []
        var compensates: [Bool] = []
        var retry: [RetryPolicy] = []

        init(_ tasks: [TaskSpec]) {
            for task in tasks where index[task.id] == nil {
                index[task.id] = ids.count
                ids.append(task.id)
            }
            for task in tasks where needs.count < ids.count {
                // A task never needs itself (validation refuses it); a name unknown here is dropped.
                needs.append(task.needs.compactMap { $0 == task.id ? nil : index[$0] })
                dependencies.append(task.dependencies.sorted().compactMap { index[$0] })
                startWhen.append(task.startWhen)
                failsRun.append(task.onFailure == .fail)
                maxAttempts.append(task.retry.maxAttempts)
                compensates.append(task.compensate != nil)
                retry.append(task.retry)
            }
        }
    }

    public init(definition: WorkflowDefinition, inputs: [String: WorkflowValue]) {
        self.definition = definition
        plan = Plan(definition.tasks)
        var values: [String: WorkflowValue] = [:]
        for input in definition.inputs { values[input.name] = inputs[input.name] ?? input.defaultValue }
        context = RunContext(inputs: values)
        progress = Array(repeating: Progress(), count: plan.ids.count)
    }

    /// A task's index in `progress` (its place in the definition).
    public func index(of id: String) -> Int? { plan.index[id] }

    public func progress(of id: String) -> Progress? { plan.index[id].map { progress[$0] } }

    /// Records a transition. Ones for unknown tasks are ignored (a definition's version decides
    /// its tasks; the engine never records those). A completed or cancelled task stays so (the
    /// first completion decides, also when an engine that took over an attempt for stopped records
    /// its failure later), and `scheduled` after a task has moved on is ignored: so engines that
    /// apply transitions in different orders still agree.
    public mutating func apply(_ transition: Transition) {
        let id: String
        switch transition {
        case .scheduled(let t), .started(let t), .retrying(let t), .cancelled(let t), .interrupted(let t): id = t
        case .completed(let t, _), .failed(let t, _): id = t
        }
        guard let i = plan.index[id] else { return }
        if let current = progress[i].state {
            if current == .completed || current == .cancelled { return }
            if case .scheduled = transition { return }
        }
        switch transition {
        case .scheduled: note(i, .scheduled)
        case .started:
            progress[i].attempts += 1
            note(i, .started)
        case .completed(_, let output):
            note(i, .completed)
            context.outputs[id] = output
            completionOrder.append(id)
        case .failed(_, let error):
            note(i, .failed)
            progress[i].error = error
            progress[i].lastInterrupted = false
        case .interrupted:
            progress[i].interrupted += 1
            note(i, .failed)
            progress[i].error = "interrupted by a pause"
            progress[i].lastInterrupted = true
        case .retrying: note(i, .retrying)
        case .cancelled: note(i, .cancelled)
        }
    }

    private mutating func note(_ i: Int, _ state: TaskState) {
        progress[i].state = state
        context.states[plan.ids[i], default: []].insert(state)
    }

    /// Failed with no attempt left.
    public func failedForGood(_ id: String) -> Bool {
        plan.index[id].map(failedForGood(at:)) ?? false
    }

    func failedForGood(at i: Int) -> Bool {
        progress[i].state == .failed && !progress[i].lastInterrupted && progress[i].attempts - progress[i].interrupted >= plan.maxAttempts[i]
    }

    /// Completed, skipped, cancelled or failed for good: nothing more will happen to it.
    public func isDone(_ id: String) -> Bool {
        plan.index[id].map(isDone(at:)) ?? true
    }

    func isDone(at i: Int) -> Bool {
        let p = progress[i]
        return p.state == .completed || p.state == .cancelled || p.skipped != nil || failedForGood(at: i)
    }

    /// After a failed attempt: the next attempt and its pause (backoff without jitter; the
    /// engine adds jitter), or give up.
    public func retryDecision(for id: String) -> RetryDecision {
        guard let i = plan.index[id], progress[i].state == .failed else { return .giveUp }
        let p = progress[i]
        if p.lastInterrupted { return .retry(attempt: p.attempts + 1, after: .zero) }
        guard p.attempts - p.interrupted < plan.maxAttempts[i] else { return .giveUp }
        return .retry(attempt: p.attempts + 1, after: plan.retry[i].backoff(before: p.attempts - p.interrupted + 1))
    }

    /// Marks the tasks that can never run as skipped, to a fixed point: those needing a task that
    /// was skipped, cancelled or failed for good (under `continue`), and those whose dependencies
    /// are all done while their `start_when` does not hold. Call after applying transitions.
    public mutating func settle() {
        var changed = true
        while changed {
            changed = false
            for i in progress.indices where progress[i].state == nil && progress[i].skipped == nil {
                var reason: String?
                for n in plan.needs[i] {
                    let p = progress[n]
                    if p.skipped != nil { reason = "\(plan.ids[n]) was skipped" }
                    else if p.state == .cancelled { reason = "\(plan.ids[n]) was cancelled" }
                    else if failedForGood(at: n) { reason = "\(plan.ids[n]) failed" }
                    if reason != nil { break }
                }
                if reason == nil, let condition = plan.startWhen[i], plan.dependencies[i].allSatisfy(isDone(at:)), !condition.holds(in: context) {
                    reason = "its start_when does not hold and can no longer change"
                }
                if let reason {
                    progress[i].skipped = reason
                    changed = true
                }
            }
        }
    }

    /// Tasks that may be scheduled now, in definition order: nothing recorded for them yet, every
    /// task they need completed, their `start_when` holds. None once the run has an outcome.
    public var ready: [String] { readyIndices.map { plan.ids[$0] } }

    /// `ready`, as indexes.
    public var readyIndices: [Int] {
        guard outcome == nil else { return [] }
        return progress.indices.filter { i in
            guard progress[i].state == nil, progress[i].skipped == nil else { return false }
            guard plan.needs[i].allSatisfy({ progress[$0].state == .completed }) else { return false }
            if let condition = plan.startWhen[i], !condition.holds(in: context) { return false }
            return true
        }
    }

    /// How the run ends, once it does: failed as soon as a task fails for good under
    /// `on_failure: fail`; completed when every task is done.
    public var outcome: Outcome? {
        for i in progress.indices where plan.failsRun[i] && failedForGood(at: i) {
            return .failed(task: plan.ids[i], error: progress[i].error ?? "failed")
        }
        return progress.indices.allSatisfy(isDone(at:)) ? .completed : nil
    }

    /// The completed tasks that have a `compensate` step, latest completion first (SAGA order).
    public var compensationOrder: [String] {
        completionOrder.reversed().filter { plan.index[$0].map { plan.compensates[$0] } ?? false }
    }
}

/// Run inputs that do not match the definition's declarations.
public struct InputError: Error, Sendable, Hashable, CustomStringConvertible {
    public var input: String
    public var message: String
    public var description: String { "input \(input): \(message)" }
}

extension WorkflowDefinition {
    /// The inputs of a run: each given value checked against its declaration, defaults filled in.
    /// Refuses an undeclared input, a value of the wrong type, a missing required one.
    public func runInputs(_ given: [String: WorkflowValue]) throws(InputError) -> [String: WorkflowValue] {
        for name in given.keys.sorted() where !inputs.contains(where: { $0.name == name }) {
            throw InputError(input: name, message: "is not declared (the workflow takes \(inputs.isEmpty ? "no inputs" : inputs.map(\.name).joined(separator: ", ")))")
        }
        var values: [String: WorkflowValue] = [:]
        for spec in inputs {
            if let value = given[spec.name] {
                guard DefinitionParser.value(value, hasType: spec.type), value.references.isEmpty else {
                    throw InputError(input: spec.name, message: "must be a \(spec.type.rawValue)")
                }
                values[spec.name] = value
            } else if let value = spec.defaultValue {
                values[spec.name] = value
            } else {
                throw InputError(input: spec.name, message: "is required (it has no default)")
            }
        }
        return values
    }
}
