import BanyanClient
import Synchronization

/// The long-running engine (`banyan workflow engine`, `banyan serve --workflows`): it finds the
/// runs in the log that have not ended and drives them, then every run requested later, until it
/// is cancelled (docs/WORKFLOWS.md, "The engine process"). Like `Engine` it keeps nothing of its
/// own: a restarted service finds the same unfinished runs from the log.
public struct EngineService: Sendable {
    public var engine: Engine
    /// Runs driven at once (`--max-concurrent-runs`), those waiting on a timer or a signal
    /// included (they cost memory, not work); the others wait in the queue.
    public var runsMax = 1_000
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

    /// The views its scheduler reads (pass the workflow API's, in a process serving both).
    public var views = WorkflowViews()

    /// An engine whose latest heartbeat is older than this is taken for stopped: other engines
    /// then take over the attempts it claimed. It records one every `heartbeatTTL / 3`.
    public var heartbeatTTL: Duration = .seconds(15)

    /// Log pages are read this many events at a time (the server's largest page).
    static let pageEventsMax = 10_000

    /// How often heartbeats are read to find engines that stopped (and take over their runs).
    static let livenessInterval: Duration = .seconds(1)
    /// A run nobody has claimed yet is claimed first by its preferred engine (a hash of the run
    /// and the live engines' names); the others wait this long before they claim it, so runs
    /// spread over the engines instead of going to whichever reads first.
    static let claimGrace: Duration = .seconds(1)
    /// How often schedules are looked at (their finest step, a cron's seconds field, is 1 s).
    static let scheduleInterval: Duration = .seconds(1)

    /// Runs until cancelled. A server out of reach at the start is tried again (1 s doubling to
    /// 30 s), as is any later read.
    public func run() async throws {
        let liveness = Liveness(ttl: heartbeatTTL)
        let engine = { var e = self.engine; e.liveness = liveness; return e }()
        let beat = Heartbeat(engine: engine, ttl: heartbeatTTL)
        try await retrying("recording this engine's first heartbeat") {
            try await beat.once()
            // Read at once (then every `livenessInterval`): claims begin knowing the others.
            try await liveness.refresh(engine.client)
        }
        var queue = RunQueue()
        var ids: [String: RunEvents.RunID] = [:]
        /// Runs another live engine has claimed, by that engine: taken over if it stops.
        var watched: [String: String] = [:]
        var endCursor: UInt64 = 0
        var ended: Set<String> = []
        var cursor: UInt64 = 0
        var startupEnd: UInt64 = 0
        try await retrying("reading the unfinished runs") {
            let start = try await RunEvents.logStart(engine.client)
            startupEnd = try await RunEvents.lastID(engine.client)
            ended = []
            // Runs that ended, read before the requests so none of them is driven again.
            for type in RunLifecycle.endTypes {
                _ = try await RunEvents.readPages(engine.client, after: start, type: type) { events in ended.formUnion(Self.runIDs(events).map(\.run)) }
            }
            cursor = start
            endCursor = startupEnd
        }
        /// New requests, while the queue has room; `ended` is only needed up to where the log
        /// ended at the start (later requests are runs this service sees end).
        func readRequests() async throws {
            while queue.count < queueMax {
                let page = try await readRuns(engine, type: "workflow.run.requested", after: cursor)
                for id in page.runs where !ended.contains(id.run) {
                    if queue.add(id.run) { ids[id.run] = id }
                }
                guard page.next > cursor else { break }
                cursor = page.next
                if page.next >= page.last { break }
            }
            if cursor >= startupEnd { ended = [] }
        }
        try await retrying("reading the unfinished runs") { try await readRequests() }
        engine.log("engine \(engine.engineID): \(queue.count) unfinished runs in the log")

        enum Done: Sendable {
            case tick
            case beat
            case check
            case drove(String, failed: Bool)
            /// Another live engine holds the run's claim.
            case watching(String, engine: String)
            /// The scheduling loop ended (the service is stopping).
            case unscheduled
        }
        let claims = RunClaims(engine: engine)
        let isAlive = { @Sendable (other: String) async throws -> Bool in
            // An engine that began after the last read of heartbeats: read them now.
            if !liveness.knows(other) { try await liveness.refresh(engine.client) }
            return liveness.isAlive(other)
        }
        var failures: [String: Int] = [:]
        var later: [(run: String, at: ContinuousClock.Instant)] = []
        try await withThrowingTaskGroup(of: Done.self) { group in
            var active = 0
            group.addTask {
                try await Task.sleep(for: pollInterval)
                return .tick
            }
            group.addTask {
                try await Task.sleep(for: heartbeatTTL / 3)
                return .beat
            }
            group.addTask {
                try await Task.sleep(for: Self.livenessInterval)
                return .check
            }
            group.addTask {
                // Scheduled workflows: this engine fires the schedules it is the preferred engine
                // of among the live ones (another takes a schedule over when its engine stops).
                let scheduler = Scheduler(engine: engine, views: views)
                while !Task.isCancelled {
                    do {
                        try await scheduler.pass { Self.preferred($0, among: liveness.alive()) == engine.engineID }
                    } catch is CancellationError {
                        break
                    } catch {
                        engine.log("schedules: \(error)")
                    }
                    try? await Task.sleep(for: Self.scheduleInterval)
                }
                return .unscheduled
            }
            while !Task.isCancelled {
                while active < runsMax, let run = queue.next() {
                    active += 1
                    let known = ids[run]
                    group.addTask {
                        do {
                            var id = known
                            if id == nil {
                                var reader = RunReader(client: engine.client, run: run)
                                id = try await reader.identity()
                            }
                            var current: RunClaims.Claim?? = .some(try await claims.latest(run))
                            if current == .some(nil), let preferred = Self.preferred(run, among: liveness.alive()), preferred != engine.engineID {
                                try await Task.sleep(for: Self.claimGrace)
                                current = nil  // read again after the grace
                            }
                            switch try await claims.acquire(run, id: id!, known: current, alive: isAlive) {
                            case .other(let holder): return .watching(run, engine: holder)
                            case .abandoned:
                                engine.log("run \(run): taken over \(RunClaims.claimsMax) times; left to `banyan workflow resume`")
                                return .drove(run, failed: false)
                            case .mine(let takeover?):
                                engine.metrics.takeover()
                                engine.log("run \(run): taking it over from engine \(takeover), which stopped")
                            case .mine(nil): break
                            }
                            _ = try await engine.drive(run: run)
                            return .drove(run, failed: false)
                        } catch let error as Engine.EngineError {
                            engine.log("run \(run): \(error)")
                            switch error {
                            case .definition, .unknownRun, .inputs, .badRunID, .runExists, .subWorkflow: return .drove(run, failed: false)
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
                engine.metrics.queue(waiting: queue.count, active: active)
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
                case .beat?:
                    group.addTask {
                        do { try await beat.once() } catch { engine.log("heartbeat: \(error)") }
                        try await Task.sleep(for: heartbeatTTL / 3)
                        return .beat
                    }
                    // Runs others held that have ended are no longer watched (read every beat,
                    // so the cursor never falls far behind).
                    do {
                        let end = try await RunEvents.lastID(engine.client)
                        for type in RunLifecycle.endTypes {
                            _ = try await RunEvents.readPages(engine.client, after: endCursor, type: type) { events in
                                for id in Self.runIDs(events) { watched[id.run] = nil }
                            }
                        }
                        endCursor = end
                    } catch {
                        engine.log("reading ended runs: \(error)")
                    }
                case .check?:
                    // Who is alive decides which engine claims a new run first, and runs whose
                    // claimant stopped are claimed again (taken over) here.
                    do {
                        try await liveness.refresh(engine.client)
                        for (run, holder) in watched where !liveness.isAlive(holder) {
                            watched[run] = nil
                            queue.retry(run)
                        }
                    } catch {
                        engine.log("reading heartbeats: \(error)")
                    }
                    group.addTask {
                        try await Task.sleep(for: Self.livenessInterval)
                        return .check
                    }
                case .watching(let run, let holder)?:
                    active -= 1
                    queue.finished(run)
                    ids[run] = nil
                    watched[run] = holder
                case .drove(let run, let failed)?:
                    active -= 1
                    queue.finished(run)
                    if !failed { ids[run] = nil }
                    if failed {
                        let n = failures[run, default: 0]
                        failures[run] = n + 1
                        let pause = min(retryPause * (1 << min(n, 16)), retryPauseMax)
                        later.append((run, ContinuousClock.now + pause))
                    } else {
                        failures[run] = nil
                    }
                case .unscheduled?:
                    break
                case nil:
                    return
                }
            }
        }
    }

    /// `body`, tried again after a failure (1 s doubling to 30 s) until it succeeds or the task
    /// is cancelled.
    func retrying(_ what: String, _ body: () async throws -> Void) async throws {
        var pause = retryPause
        while true {
            do {
                try await body()
                return
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                engine.log("\(what): \(error); trying again in \(pause)")
                try await Task.sleep(for: pause)
                pause = min(pause * 2, retryPauseMax)
            }
        }
    }

    /// This engine's heartbeats (everyone's are read by the service, every `livenessInterval`).
    final class Heartbeat: Sendable {
        let engine: Engine
        let ttl: Duration
        let sequence = Atomic<UInt64>(0)

        init(engine: Engine, ttl: Duration) {
            self.engine = engine
            self.ttl = ttl
        }

        /// Straight to the server, not through the shared batches: a heartbeat must not wait
        /// behind other runs' appends.
        func once() async throws {
            let n = sequence.add(1, ordering: .relaxed).newValue
            let draft = Liveness.heartbeat(engine: engine.engineID, incarnation: engine.incarnation, sequence: n, ttl: ttl)
            try await engine.append(Array(WorkflowValue.array([draft.json]).json.utf8))
        }
    }


    /// The engine that claims `run` first (rendezvous hashing over the live engines), so that
    /// unclaimed runs spread evenly and only move when engines come and go.
    static func preferred(_ run: String, among engines: [String]) -> String? {
        func score(_ engine: String) -> UInt64 {
            // FNV-1a alone barely moves its high bits for names that differ at the end (run
            // ids often do): MurmurHash3's finalizer spreads every input bit over the result.
            var h = RunEvents.fnv1a(engine + "\u{0}" + run)
            h ^= h >> 33
            h = h &* 0xff51_afd7_ed55_8ccd
            h ^= h >> 33
            h = h &* 0xc4ce_b9fe_1a85_ec53
            return h ^ (h >> 33)
        }
        return engines.max { score($0) < score($1) }
    }

    /// The runs of one page of events of `type`.
    func readRuns(_ engine: Engine, type: String, after: UInt64) async throws -> (runs: [RunEvents.RunID], next: UInt64, last: UInt64) {
        let bytes = try await engine.client.page(after: after, limit: Self.pageEventsMax, type: type)
        let page: (events: [RunEvents.Recorded], next: UInt64, last: UInt64)
        do { page = try RunEvents.page(bytes) } catch { throw Engine.EngineError.log("\(error)") }
        return (Self.runIDs(page.events), page.next, page.last)
    }

    /// The runs of run-level events this service drives: child runs are driven by their
    /// parent's attempt (which an engine takes over with the parent), code workflows by the
    /// process that holds their Swift code (`CodeRunner`).
    static func runIDs(_ events: [RunEvents.Recorded]) -> [RunEvents.RunID] {
        events.compactMap { e -> RunEvents.RunID? in
            guard e.payload["parent"] == nil, e.payload["code"] == nil, let run = e.payload["run"]?.stringValue else { return nil }
            return RunEvents.RunID(run: run, workflow: e.payload["workflow"]?.stringValue ?? "", version: e.payload["version"]?.stringValue ?? "")
        }
    }

    /// Runs waiting to be driven, in the order requested, each once: a run already queued or
    /// being driven is not queued again.
    struct RunQueue {
        private var waiting: [String] = []
        private var head = 0
        private var known: Set<String> = []

        var count: Int { waiting.count - head }

        /// False when it is already queued or being driven.
        @discardableResult
        mutating func add(_ run: String) -> Bool {
            guard known.insert(run).inserted else { return false }
            waiting.append(run)
            return true
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
