import Synchronization

/// What an engine process has done, for `/metrics` (docs/WORKFLOWS.md, "Metrics"): task
/// attempts by outcome, the time from a task being ready to its attempt starting, run
/// takeovers, and its queue. Plain counters here (the engine depends on no metrics library);
/// `WorkflowMetrics` in WorkflowServer writes them in Prometheus's text format.
public final class EngineMetrics: Sendable {
    public struct Snapshot: Sendable, Hashable {
        /// Attempts by what happened: `started`, `completed`, `failed`, `retried`.
        public var tasks: [String: Int] = [:]
        /// Scheduling latency: counts per bucket (upper bounds in `latencyBuckets`, then +Inf),
        /// their sum in seconds, and the count.
        public var latencyCounts: [Int] = Array(repeating: 0, count: EngineMetrics.latencyBuckets.count + 1)
        public var latencySum: Double = 0
        public var latencyCount = 0
        public var takeovers = 0
        public var queued = 0
        public var active = 0
    }

    /// Seconds.
    public static let latencyBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    private let state = Mutex(Snapshot())

    public init() {}

    public var snapshot: Snapshot { state.withLock { $0 } }

    func task(_ event: String) { state.withLock { $0.tasks[event, default: 0] += 1 } }

    func scheduled(after latency: Duration) {
        let seconds = Double(latency.components.seconds) + Double(latency.components.attoseconds) / 1e18
        state.withLock { s in
            let i = Self.latencyBuckets.firstIndex { seconds <= $0 } ?? Self.latencyBuckets.count
            s.latencyCounts[i] += 1
            s.latencySum += seconds
            s.latencyCount += 1
        }
    }

    func takeover() { state.withLock { $0.takeovers += 1 } }

    func queue(waiting: Int, active: Int) {
        state.withLock {
            $0.queued = waiting
            $0.active = active
        }
    }
}
