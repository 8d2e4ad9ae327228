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
    public private(set) var tasks: [String: Progress]
    /// Completed tasks, in completion order (compensation runs them backwards).
    public private(set) var completionOrder: [String] = []

    /// Where one task stands.
    public struct Progress: Sendable, Hashable {
        /// Attempts started so far.
        public var attempts = 0
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
        var needs: [[String]] = []
        var dependencies: [Set<String>] = []
        var startWhen: [Condition?] = []
        var failsRun: [Bool] = []
        var maxAttempts: [Int] = []
        var compensates: [Bool] = []
        var retry: [RetryPolicy] = []

        init(_ tasks: [TaskSpec]) {
            for task in tasks where index[task.id] == nil {
                index[task.id] = ids.count
                ids.append(task.id)
                needs.append(task.needs)
                dependencies.append(task.dependencies)
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
        tasks = Dictionary(definition.tasks.map { ($0.id, Progress()) }, uniquingKeysWith: { a, _ in a })
    }

    /// Records a transition. Ones for unknown tasks are ignored (a definition's version decides
    /// its tasks; the engine never records those). A completed or cancelled task stays so (the
    /// first completion decides, also when an engine that took over an attempt for stopped records
    /// its failure later), and `scheduled` after a task has moved on is ignored: so engines that
    /// apply transitions in different orders still agree.
    public mutating func apply(_ transition: Transition) {
        let id: String
        switch transition {
        case .scheduled(let t), .started(let t), .retrying(let t), .cancelled(let t): id = t
        case .completed(let t, _), .failed(let t, _): id = t
        }
        guard let current = tasks[id]?.state else {
            applyInOrder(transition)
            return
        }
        if current == .completed || current == .cancelled { return }
        if case .scheduled = transition { return }
        applyInOrder(transition)
    }

    private mutating func applyInOrder(_ transition: Transition) {
        switch transition {
        case .scheduled(let id): note(id, .scheduled)
        case .started(let id):
            tasks[id]?.attempts += 1
            note(id, .started)
        case .completed(let id, let output):
            guard tasks[id] != nil, tasks[id]?.state != .completed else { return }
            note(id, .completed)
            context.outputs[id] = output
            completionOrder.append(id)
        case .failed(let id, let error):
            note(id, .failed)
            tasks[id]?.error = error
        case .retrying(let id): note(id, .retrying)
        case .cancelled(let id): note(id, .cancelled)
        }
    }

    private mutating func note(_ id: String, _ state: TaskState) {
        guard tasks[id] != nil else { return }
        tasks[id]?.state = state
        context.states[id, default: []].insert(state)
    }

    /// Failed with no attempt left.
    public func failedForGood(_ id: String) -> Bool {
        guard let p = tasks[id], let i = plan.index[id] else { return false }
        return p.state == .failed && p.attempts >= plan.maxAttempts[i]
    }

    /// Completed, skipped, cancelled or failed for good: nothing more will happen to it.
    public func isDone(_ id: String) -> Bool {
        guard let p = tasks[id] else { return true }
        return p.state == .completed || p.state == .cancelled || p.skipped != nil || failedForGood(id)
    }

    /// After a failed attempt: the next attempt and its pause (backoff without jitter; the
    /// engine adds jitter), or give up.
    public func retryDecision(for id: String) -> RetryDecision {
        guard let p = tasks[id], let i = plan.index[id], p.state == .failed else { return .giveUp }
        guard p.attempts < plan.maxAttempts[i] else { return .giveUp }
        return .retry(attempt: p.attempts + 1, after: plan.retry[i].backoff(before: p.attempts + 1))
    }

    /// Marks the tasks that can never run as skipped, to a fixed point: those needing a task that
    /// was skipped, cancelled or failed for good (under `continue`), and those whose dependencies
    /// are all done while their `start_when` does not hold. Call after applying transitions.
    public mutating func settle() {
        var changed = true
        while changed {
            changed = false
            for i in plan.ids.indices where tasks[plan.ids[i]]?.state == nil && tasks[plan.ids[i]]?.skipped == nil {
                let id = plan.ids[i]
                var reason: String?
                for need in plan.needs[i] where need != id {
                    let p = tasks[need]
                    if p?.skipped != nil { reason = "\(need) was skipped" }
                    else if p?.state == .cancelled { reason = "\(need) was cancelled" }
                    else if failedForGood(need) { reason = "\(need) failed" }
                    if reason != nil { break }
                }
                if reason == nil, let condition = plan.startWhen[i], plan.dependencies[i].allSatisfy(isDone), !condition.holds(in: context) {
                    reason = "its start_when does not hold and can no longer change"
                }
                if let reason {
                    tasks[id]?.skipped = reason
                    changed = true
                }
            }
        }
    }

    /// Tasks that may be scheduled now, in definition order: nothing recorded for them yet, every
    /// task they need completed, their `start_when` holds. None once the run has an outcome.
    public var ready: [String] {
        guard outcome == nil else { return [] }
        return plan.ids.indices.compactMap { i in
            guard let p = tasks[plan.ids[i]], p.state == nil, p.skipped == nil else { return nil }
            guard plan.needs[i].allSatisfy({ tasks[$0]?.state == .completed }) else { return nil }
            if let condition = plan.startWhen[i], !condition.holds(in: context) { return nil }
            return plan.ids[i]
        }
    }

    /// How the run ends, once it does: failed as soon as a task fails for good under
    /// `on_failure: fail`; completed when every task is done.
    public var outcome: Outcome? {
        for i in plan.ids.indices where plan.failsRun[i] && failedForGood(plan.ids[i]) {
            return .failed(task: plan.ids[i], error: tasks[plan.ids[i]]?.error ?? "failed")
        }
        return plan.ids.allSatisfy(isDone) ? .completed : nil
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
