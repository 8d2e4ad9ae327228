import Workflow

/// The workflow engine's metrics in Prometheus's text format (docs/WORKFLOWS.md, "Metrics"):
/// runs by state (from the run history), task attempts by outcome, scheduling latency, run
/// takeovers and the engine's queue.
enum WorkflowMetrics {
    static func render(runs: [RunLifecycle.State: Int], engine: EngineMetrics.Snapshot?) -> String {
        var out = "# HELP banyan_workflow_runs Runs by state, from the run history.\n# TYPE banyan_workflow_runs gauge\n"
        for state in RunLifecycle.State.allCases { out += "banyan_workflow_runs{state=\"\(state.rawValue)\"} \(runs[state] ?? 0)\n" }
        guard let engine else { return out }
        out += "# HELP banyan_workflow_tasks_total Task attempts this engine started, completed, failed, and retried.\n# TYPE banyan_workflow_tasks_total counter\n"
        for event in ["started", "completed", "failed", "retried"] { out += "banyan_workflow_tasks_total{event=\"\(event)\"} \(engine.tasks[event] ?? 0)\n" }
        out += "# HELP banyan_workflow_scheduling_seconds From a task being ready (or due to retry) to its attempt's claim.\n"
        out += "# TYPE banyan_workflow_scheduling_seconds histogram\n"
        var cumulative = 0
        for (i, bound) in EngineMetrics.latencyBuckets.enumerated() {
            cumulative += engine.latencyCounts[i]
            out += "banyan_workflow_scheduling_seconds_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        out += "banyan_workflow_scheduling_seconds_bucket{le=\"+Inf\"} \(engine.latencyCount)\n"
        out += "banyan_workflow_scheduling_seconds_sum \(engine.latencySum)\nbanyan_workflow_scheduling_seconds_count \(engine.latencyCount)\n"
        out += "# HELP banyan_workflow_takeovers_total Runs this engine took over from an engine that stopped.\n# TYPE banyan_workflow_takeovers_total counter\n"
        out += "banyan_workflow_takeovers_total \(engine.takeovers)\n"
        out += "# HELP banyan_workflow_queue_runs Runs waiting in this engine's queue, and being driven.\n# TYPE banyan_workflow_queue_runs gauge\n"
        out += "banyan_workflow_queue_runs{state=\"waiting\"} \(engine.queued)\nbanyan_workflow_queue_runs{state=\"driven\"} \(engine.active)\n"
        return out
    }
}
