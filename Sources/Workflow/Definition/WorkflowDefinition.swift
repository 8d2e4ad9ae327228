import Foundation

/// A workflow as its YAML definition states it, validated (docs/WORKFLOWS.md). Built by
/// `DefinitionParser`; every field here passed its checks, so the engine never re-checks them.
public struct WorkflowDefinition: Sendable, Hashable {
    public var name: String
    public var inputs: [InputSpec]
    /// In the order written; ids are unique and the `needs`/`start_when` graph has no cycle.
    public var tasks: [TaskSpec]
    /// Tasks of one run running at once (`concurrency:`); the engine's `--max-concurrent-tasks`
    /// bounds all runs together.
    public var concurrency: Int = concurrencyDefault
    /// `schedule:`: runs started by the clock (docs/WORKFLOWS.md, "Schedules").
    public var schedule: Schedule?

    public static let concurrencyDefault = 8

    public func task(_ id: String) -> TaskSpec? { tasks.first { $0.id == id } }
}

/// One declared input: `inputs: {target: {type: string, default: all}}`.
public struct InputSpec: Sendable, Hashable {
    public enum ValueType: String, Sendable, Hashable, CaseIterable {
        case string, number, boolean, object, array
    }

    public var name: String
    public var type: ValueType
    /// Nil: the input is required.
    public var defaultValue: WorkflowValue?
}

/// One task. `kind` carries what the kind needs; the rest applies to every kind.
public struct TaskSpec: Sendable, Hashable {
    public var id: String
    public var kind: TaskKind
    /// Tasks that must have completed first.
    public var needs: [String]
    /// A condition over the run's events and outputs that must hold before it starts.
    public var startWhen: Condition?
    /// Values passed to the task, bound from inputs and earlier outputs (`{{ ... }}` templates).
    public var inputs: [String: WorkflowValue]
    public var retry: RetryPolicy
    public var timeout: Duration?
    /// Run, in reverse completion order, when the run fails after this task completed (SAGA).
    public indirect enum Compensation: Sendable, Hashable {
        case task(TaskSpec)
    }
    public var compensate: Compensation?
    public var onFailure: FailurePolicy

    /// The tasks this one waits for: its `needs` and the tasks its `start_when` names.
    public var dependencies: Set<String> { Set(needs).union(startWhen?.taskReferences ?? []) }
}

public enum FailurePolicy: String, Sendable, Hashable, CaseIterable {
    /// The run fails (and compensates) when this task has failed for good.
    case fail
    /// The run goes on; tasks that need this one are skipped.
    case `continue`
}

/// What a task does.
public enum TaskKind: Sendable, Hashable {
    /// `run` (argv), `env`, `cwd`; `output: json` parses stdout as the task's output.
    case shell(run: [WorkflowValue], env: [String: WorkflowValue], cwd: WorkflowValue?, output: OutputFormat)
    /// `request: {method, url, headers, body, expect}`.
    case http(HTTPRequestSpec)
    /// `duration`: a durable timer.
    case sleep(Duration)
    /// `signal`: waits for a signal of that name sent to the run; its payload is the output.
    case waitForSignal(String)
    /// `workflow` (a definition's name) and the task's `inputs` as the child's inputs.
    case subWorkflow(String)
    /// `function`: a Swift closure registered with the engine under this name.
    case swift(String)

    public var name: String {
        switch self {
        case .shell: "shell"
        case .http: "http"
        case .sleep: "sleep"
        case .waitForSignal: "wait_for_signal"
        case .subWorkflow: "sub_workflow"
        case .swift: "swift"
        }
    }

    public static let names = ["shell", "http", "sleep", "wait_for_signal", "sub_workflow", "swift"]

    /// A timer, a wait for a signal, or a child run: no work of its own (a child's tasks take
    /// their permits), so it holds no task permit, and an engine that resumes a run goes on
    /// waiting rather than counting the attempt as failed.
    public var waits: Bool {
        switch self {
        case .sleep, .waitForSignal, .subWorkflow: true
        default: false
        }
    }
}

public enum OutputFormat: String, Sendable, Hashable, CaseIterable {
    /// stdout (its tail) as a string.
    case text
    /// stdout parsed as JSON.
    case json
}

public struct HTTPRequestSpec: Sendable, Hashable {
    public var method: String
    public var url: WorkflowValue
    public var headers: [String: WorkflowValue]
    public var body: WorkflowValue?
    /// Statuses that count as success (default: 200...299).
    public var expect: [Int]
}

/// `retry: {max_attempts, backoff: {initial, multiplier, max}, jitter}`.
public struct RetryPolicy: Sendable, Hashable {
    public var maxAttempts: Int
    public var initial: Duration
    public var multiplier: Double
    public var max: Duration
    public var jitter: Bool

    public init(maxAttempts: Int, initial: Duration, multiplier: Double, max: Duration, jitter: Bool) {
        self.maxAttempts = maxAttempts
        self.initial = initial
        self.multiplier = multiplier
        self.max = max
        self.jitter = jitter
    }

    /// One attempt, no retry.
    public static let none = RetryPolicy(maxAttempts: 1, initial: .milliseconds(100), multiplier: 2, max: .seconds(60), jitter: false)

    /// The pause before attempt `attempt` (2, 3, ...), without jitter: initial × multiplier^(attempt-2), at most `max`.
    public func backoff(before attempt: Int) -> Duration {
        guard attempt >= 2 else { return .zero }
        var delay = Double(initial.components.seconds) + Double(initial.components.attoseconds) / 1e18
        let cap = Double(max.components.seconds) + Double(max.components.attoseconds) / 1e18
        for _ in 2..<attempt {
            guard delay < cap else { break }
            delay *= multiplier
        }
        return .milliseconds(Int64((Swift.min(delay, cap) * 1000).rounded()))
    }
}

/// When a workflow runs by itself: `schedule: {cron: "*/5 * * * *", timezone: UTC, overlap:
/// skip, catch_up: none, inputs: {...}}`.
public struct Schedule: Sendable, Hashable {
    public var cron: Cron
    public var timezone: TimeZone
    /// The zone's name as written (Foundation calls UTC "GMT").
    public var timezoneName = "UTC"
    /// What a tick does while a run the schedule started is still running.
    public enum Overlap: String, Sendable, Hashable, CaseIterable {
        /// The tick starts nothing (recorded as skipped).
        case skip
        /// The tick starts a run anyway.
        case allow
        /// The tick's run starts once the running ones have ended (at most `queuedMax` wait).
        case queue
    }
    public var overlap = Overlap.skip
    /// Ticks that passed while no engine ran (more than `Schedule.lateMax` ago when read).
    public enum CatchUp: String, Sendable, Hashable, CaseIterable {
        /// They start nothing.
        case none
        /// The latest of them starts a run.
        case last
        /// Each starts a run, at most `catchUpMax` (the latest).
        case all
    }
    public var catchUp = CatchUp.none
    /// The inputs of its runs.
    public var inputs: [String: WorkflowValue] = [:]

    /// A tick read later than this after its time was missed.
    public static let lateMax = Duration.seconds(10)
    public static let catchUpMax = 100
    public static let queuedMax = 100
}
