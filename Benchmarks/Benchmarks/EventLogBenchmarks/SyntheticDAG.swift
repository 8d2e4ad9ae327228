import EventLog

/// A seeded synthetic causal DAG shaped like `tools/gen_dag.py`, appended straight into an
/// `EventStore` (no JSONL, no import path).
///
/// Shape (as in gen_dag.py): up to `jobs` workflow runs are active at once, interleaved. A run is a
/// chain of phases; a phase is one task (scheduled -> started -> completed/failed/retried, sometimes
/// a note or an error after it) or a fan-out of 2-6 parallel tasks joined by one merge event. A new
/// run is usually triggered by an event of another recent run or by the latest checkpoint (a
/// cross-job parent), and about 5% of task starts take a second cross-job parent. Every
/// `checkpointEvery` events a checkpoint merges the previous checkpoint with the artifacts of the
/// runs finished since: a backbone like git's mainline, so late events have most of history as
/// ancestors and early events most of it as descendants. 20 event types; payloads of about 150
/// bytes with an `attempt` integer (1, sometimes 2 or 3).
///
/// Deterministic: the same seed gives the same store, byte for byte apart from commit times
/// (which are set explicitly too, from the seed). Python's and Swift's random streams differ, so
/// the DAG is gen_dag.py's shape, not its exact events.
struct SyntheticDAG {
    var events = 100_000
    var jobs = 64
    var seed: UInt64 = 7
    var checkpointEvery = 2_000
    var batchSize = 1_000

    /// What the generator knows afterwards: ids worth measuring are picked from these.
    struct Outline {
        var checkpoints: [EventID] = []
        /// Events appended without parents (run starts without a trigger, the first checkpoint).
        var parentless: [EventID] = []
    }

    static let taskEnds = ["task.completed", "task.completed", "task.completed", "task.completed", "task.failed", "task.retried"]
    static let notes = ["cache.hit", "cache.miss", "log.note", "heartbeat", "timer.fired", "signal.received"]
    static let workers = (0..<24).map { "worker-" + pad($0, 2) }
    static let regions = ["eu-west-1", "us-east-2", "ap-south-1"]

    /// One planned event of a run: its type, parents as indexes into the run's own events (-1: the
    /// run's trigger), and whether it takes one more parent from a recent event of another run.
    struct Step {
        var type: String
        var local: [Int]
        var cross: Bool
    }

    final class Run {
        let name: String
        let trigger: EventID?
        let steps: [Step]
        var next = 0
        var ids: [EventID] = []

        init(name: String, trigger: EventID?, steps: [Step]) {
            self.name = name
            self.trigger = trigger
            self.steps = steps
        }
    }

    /// gen_dag.py's `job_events`, drawn eagerly when the run starts.
    static func plan(_ rng: inout SplitMix64, triggered: Bool) -> [Step] {
        var steps = [Step(type: "job.started", local: triggered ? [-1] : [], cross: false), Step(type: "input.received", local: [0], cross: false)]
        var last = 1
        var n = 2
        for _ in 0..<rng.int(3...12) {
            if rng.double() < 0.35 {
                steps.append(Step(type: "phase.fanout", local: [last], cross: false))
                let fan = n
                n += 1
                var ends: [Int] = []
                for _ in 0..<rng.int(2...6) {
                    steps.append(Step(type: "task.scheduled", local: [fan], cross: false))
                    steps.append(Step(type: "task.started", local: [n], cross: rng.double() < 0.05))
                    steps.append(Step(type: rng.pick(taskEnds), local: [n + 1], cross: false))
                    ends.append(n + 2)
                    n += 3
                }
                steps.append(Step(type: "phase.joined", local: ends, cross: false))
                last = n
                n += 1
            } else {
                steps.append(Step(type: "task.scheduled", local: [last], cross: false))
                steps.append(Step(type: "task.started", local: [n], cross: rng.double() < 0.05))
                let end = rng.pick(taskEnds)
                steps.append(Step(type: end, local: [n + 1], cross: false))
                n += 3
                last = n - 1
                if rng.double() < 0.3 {
                    steps.append(Step(type: rng.pick(notes), local: [last], cross: false))
                    last = n
                    n += 1
                }
                if end == "task.failed" && rng.double() < 0.5 {
                    steps.append(Step(type: "task.error", local: [last], cross: false))
                    last = n
                    n += 1
                }
            }
        }
        steps.append(Step(type: "artifact.produced", local: [last], cross: false))
        steps.append(Step(type: rng.double() < 0.1 ? "job.failed" : "job.completed", local: [n], cross: false))
        return steps
    }

    /// Appends the DAG to `store`, which must hold only its genesis event (id 1): generated event
    /// `i` (1-based) gets id `i + 1`, as after `banyan import` of gen_dag.py's output.
    func append(to store: EventStore) async throws -> Outline {
        precondition(store.lastID == 1, "the synthetic DAG goes into a fresh store")
        var rng = SplitMix64(seed: seed)
        var outline = Outline()
        var active: [Run] = []
        var recent = RecentIDs(capacity: 5_000)
        var jobSeq = 0
        var time: Int64 = 1_767_225_600_000_000_000 // 2026-01-01T00:00:00Z
        var checkpoint: EventID?
        var artifacts: [EventID] = []
        var batch: [AppendRequest] = []
        batch.reserveCapacity(batchSize)
        var firstInBatch: EventID = 2

        func flush() async throws {
            guard !batch.isEmpty else { return }
            let receipt = try await store.append(batch, durability: Durability.never)
            guard receipt.results.first?.id == firstInBatch, receipt.results.last?.id == firstInBatch + EventID(batch.count) - 1 else {
                throw BenchError("synthetic DAG: the store assigned unexpected ids (is it fresh?)")
            }
            firstInBatch += EventID(batch.count)
            batch.removeAll(keepingCapacity: true)
        }

        for i in 1...events {
            let id = EventID(i) + 1
            let key = "e" + Self.pad(i, 10)
            time += Int64(rng.int(1_000_000...20_000_000))
            if i % checkpointEvery == 0 {
                let parents = (checkpoint.map { [$0] } ?? []) + artifacts.suffix(63)
                artifacts.removeAll()
                checkpoint = id
                recent.append(id)
                outline.checkpoints.append(id)
                if parents.isEmpty { outline.parentless.append(id) }
                batch.append(AppendRequest(
                    type: "checkpoint.sealed", parents: parents, key: key, stream: "checkpoints",
                    message: "checkpoint of \(parents.count) lines",
                    payload: .object([
                        JSONMember(key: "runs", value: .number(String(parents.count))),
                        JSONMember(key: "seq", value: .number(String(i / checkpointEvery))),
                    ]),
                    timeUnixNano: time))
            } else {
                // The next event of a random active run, starting runs to keep `jobs` active.
                var run: Run
                var step: Step
                while true {
                    while active.count < jobs {
                        jobSeq += 1
                        let draw = rng.double()
                        var trigger: EventID?
                        if let checkpoint, draw < 0.3 {
                            trigger = checkpoint
                        } else if !recent.isEmpty, draw < 0.8 {
                            trigger = recent.random(&rng)
                        }
                        let steps = Self.plan(&rng, triggered: trigger != nil)
                        active.append(Run(name: "job_" + Self.pad(jobSeq, 7), trigger: trigger, steps: steps))
                    }
                    let slot = rng.int(0...(active.count - 1))
                    run = active[slot]
                    if run.next < run.steps.count {
                        step = run.steps[run.next]
                        run.next += 1
                        break
                    }
                    active.swapAt(slot, active.count - 1)
                    active.removeLast()
                }
                var parents = step.local.map { $0 == -1 ? run.trigger! : run.ids[$0] }
                if step.cross, !recent.isEmpty {
                    let other = recent.random(&rng)
                    if !parents.contains(other) { parents.append(other) }
                }
                if parents.isEmpty { outline.parentless.append(id) }
                run.ids.append(id)
                recent.append(id)
                if step.type == "artifact.produced" { artifacts.append(id) }
                let attempt = 1 + (rng.double() < 0.1 ? 1 : 0) + (rng.double() < 0.02 ? 1 : 0)
                let failed = step.type.hasSuffix("failed") || step.type.hasSuffix("error")
                let payload = JSONValue.object([
                    JSONMember(key: "job", value: .string(run.name)),
                    JSONMember(key: "step", value: .number(String(run.ids.count))),
                    JSONMember(key: "attempt", value: .number(String(attempt))),
                    JSONMember(key: "worker", value: .string(rng.pick(Self.workers))),
                    JSONMember(key: "duration_ms", value: .number(String(rng.int(1...90_000)))),
                    JSONMember(key: "status", value: .string(failed ? "error" : "ok")),
                    JSONMember(key: "checksum", value: .string(Self.hex16(rng.next()))),
                    JSONMember(key: "region", value: .string(rng.pick(Self.regions))),
                ])
                batch.append(AppendRequest(
                    type: step.type, parents: parents, key: key, stream: "job_events:" + run.name,
                    message: "\(step.type) in \(run.name)", payload: payload, timeUnixNano: time))
            }
            if batch.count == batchSize { try await flush() }
        }
        try await flush()
        return outline
    }

    static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// The last `capacity` ids appended (gen_dag.py's `deque(maxlen=5000)`).
struct RecentIDs {
    private var ring: [EventID] = []
    private var start = 0
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        ring.reserveCapacity(capacity)
    }

    var isEmpty: Bool { ring.isEmpty }

    mutating func append(_ id: EventID) {
        if ring.count < capacity {
            ring.append(id)
        } else {
            ring[start] = id
            start = (start + 1) % capacity
        }
    }

    func random(_ rng: inout SplitMix64) -> EventID {
        ring[(start + rng.int(0...(ring.count - 1))) % ring.count]
    }
}

/// SplitMix64 with our own range reduction, so the stream (and the generated DAG) does not depend
/// on how a Swift release implements `random(in:using:)`.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func double() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in `range` (Lemire's multiply-shift; the bias is below 2^-40 for our ranges).
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        let span = UInt64(range.upperBound - range.lowerBound) + 1
        return range.lowerBound + Int(next().multipliedFullWidth(by: span).high)
    }

    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
