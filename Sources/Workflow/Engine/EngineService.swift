import BanyanClient

/// The long-running engine (`banyan workflow engine`, `banyan serve --workflows`): it finds the
/// runs in the log that have not ended and drives them, then every run requested later, until it
/// is cancelled (docs/WORKFLOWS.md, "The engine process"). Like `Engine` it keeps nothing of its
/// own: a restarted service finds the same unfinished runs from the log.
public struct EngineService: Sendable {
    public var engine: Engine
    /// Runs driven at once (`--max-concurrent-runs`); the others wait in the queue.
    public var runsMax = 64
    /// Runs known and waiting to be driven; new requests are read from the log only while fewer
    /// wait, so a burst of requests costs memory for at most this many.
    public var queueMax = 100_000
    /// How often the log is read for new requests.
    public var pollInterval: Duration = .milliseconds(100)
    /// A run whose drive failed (the server out of reach, say) is driven again after this,
    /// doubling per failure up to `retryPauseMax`.
    public var retryPause: Duration = .seconds(1)
    public var retryPauseMax: Duration = .seconds(30)

    public init(engine: Engine) {
        self.engine = engine
    }

    /// Log pages are read this many events at a time (the server's largest page).
    static let pageEventsMax = 10_000

    /// Runs until cancelled (or the log cannot be read at all at the start).
    public func run() async throws {
        var queue = RunQueue()
        // Runs that ended, read once before the requests so none of them is driven again.
        var ended: Set<String> = []
        for type in ["workflow.run.completed", "workflow.run.failed"] {
            var after: UInt64 = 0
            while true {
                let page = try await readRuns(type: type, after: after)
                ended.formUnion(page.runs)
                guard page.next > after else { break }
                after = page.next
            }
        }
        var cursor: UInt64 = 0
        func readRequests() async throws {
            while queue.count < queueMax {
                let page = try await readRuns(type: "workflow.run.requested", after: cursor)
                for run in page.runs where !ended.contains(run) { queue.add(run) }
                guard page.next > cursor else { return }
                cursor = page.next
            }
        }
        try await readRequests()
        ended = []  // later requests are new runs; runs this service drives it sees end
        engine.log("engine \(engine.engineID): \(queue.count) unfinished runs in the log")

        enum Done: Sendable {
            case tick
            case drove(String, failed: Bool)
        }
        var failures: [String: Int] = [:]
        var later: [(run: String, at: ContinuousClock.Instant)] = []
        try await withThrowingTaskGroup(of: Done.self) { group in
            var active = 0
            group.addTask {
                try await Task.sleep(for: pollInterval)
                return .tick
            }
            while !Task.isCancelled {
                while active < runsMax, let run = queue.next() {
                    active += 1
                    group.addTask {
                        do {
                            _ = try await engine.drive(run: run)
                            return .drove(run, failed: false)
                        } catch let error as Engine.EngineError {
                            engine.log("run \(run): \(error)")
                            switch error {
                            case .definition, .unknownRun, .inputs, .badRunID, .runExists: return .drove(run, failed: false)
                            case .log: return .drove(run, failed: true)
                            }
                        } catch is CancellationError {
                            return .drove(run, failed: false)
                        } catch {
                            engine.log("run \(run): \(error); driving it again later")
                            return .drove(run, failed: true)
                        }
                    }
                }
                switch try await group.next() {
                case .tick?:
                    let now = ContinuousClock.now
                    for entry in later where entry.at <= now { queue.retry(entry.run) }
                    later.removeAll { $0.at <= now }
                    do { try await readRequests() } catch { engine.log("reading new requests: \(error)") }
                    group.addTask {
                        try await Task.sleep(for: pollInterval)
                        return .tick
                    }
                case .drove(let run, let failed)?:
                    active -= 1
                    queue.finished(run)
                    if failed {
                        let n = failures[run, default: 0]
                        failures[run] = n + 1
                        let pause = min(retryPause * (1 << min(n, 16)), retryPauseMax)
                        later.append((run, ContinuousClock.now + pause))
                    } else {
                        failures[run] = nil
                    }
                case nil:
                    return
                }
            }
        }
    }

    /// The run ids of one page of events of `type`.
    func readRuns(type: String, after: UInt64) async throws -> (runs: [String], next: UInt64) {
        let bytes = try await engine.client.page(after: after, limit: Self.pageEventsMax, type: type)
        let page: (events: [RunEvents.Recorded], next: UInt64, last: UInt64)
        do { page = try RunEvents.page(bytes) } catch { throw Engine.EngineError.log("\(error)") }
        return (page.events.compactMap { $0.payload["run"]?.stringValue }, page.next)
    }

    /// Runs waiting to be driven, in the order requested, each once: a run already queued or
    /// being driven is not queued again.
    struct RunQueue {
        private var waiting: [String] = []
        private var head = 0
        private var known: Set<String> = []

        var count: Int { waiting.count - head }

        mutating func add(_ run: String) {
            guard known.insert(run).inserted else { return }
            waiting.append(run)
        }

        /// A run driven before whose drive failed.
        mutating func retry(_ run: String) { add(run) }

        mutating func next() -> String? {
            guard head < waiting.count else { return nil }
            defer {
                head += 1
                if head > 4_096, head * 2 > waiting.count {
                    waiting.removeFirst(head)
                    head = 0
                }
            }
            return waiting[head]
        }

        /// Its drive returned: the run may be queued again (a retry, or never: ended runs are
        /// not requested again).
        mutating func finished(_ run: String) { known.remove(run) }
    }
}
