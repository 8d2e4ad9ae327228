import Benchmark
import EventLog
import Foundation
import LineageQuery

// Banyan's benchmarks: embedded appends, reads and lineage queries against a real EventStore
// (RocksDB in a temporary directory). See Benchmarks/README.md for what each one measures, the
// figures of a run and the threshold check.
//
// Names carry no spaces or slashes: package-benchmark 1.38.1 writes threshold files with those
// replaced by "_" but looks them up under the raw name, so such a benchmark would never be checked.

// MARK: - Metrics and tolerances

/// The median of the last 15 measured iterations (ns per iteration), recorded after every
/// iteration. The static threshold check of package-benchmark 1.38.1 compares p90 only, and on a
/// shared 2-core VM the p90 of a millisecond iteration is decided by how often a neighbour
/// preempts it (Query.between's wall clock p90: 1.2 ms in one run, 4.4 ms in the next, p50
/// 1.0 ms in both). The p90 of this rolling median only moves when most iterations slow down, so
/// it is the metric the checked-in thresholds gate latency on.
let latencyMedian = BenchmarkMetric.custom("latency median15 (ns)", polarity: .prefersSmaller, useScalingFactor: false)

/// Appended events per second of one `append` call (batch size / its latency), measured around
/// the call alone, so the harness's per-iteration overhead (an async hop) is not in it.
let eventsPerSecond = BenchmarkMetric.custom("events/s", polarity: .prefersLarger, useScalingFactor: false)

/// Tolerances, per metric and percentile. `swift package benchmark thresholds check` compares a
/// run's p90 with the checked-in Thresholds/*.p90.json, for the metrics given a `.p90` tolerance
/// here (latency median15 and malloc counts); `baseline check` compares two baselines at every
/// percentile given. Wide on purpose: the reference machine is a shared 2-core VM.
enum Tolerance {
    /// Latency median15 of reads and queries: a regression past 3x the reference (improvements
    /// are never flagged). Between runs on the reference VM its p90 moved by up to 2.3x while
    /// other work ran: this catches an algorithmic regression, not a 30% one.
    static var latency: BenchmarkThresholds { BenchmarkThresholds(relative: [.p50: 200, .p90: 200]) }
    /// Latency median15 of appends: past 4x. An append is two thread hand-offs (client -> writer
    /// thread -> client) plus RocksDB's own flush and compaction threads on two cores, so the
    /// machine's state moves it most: Append.b1.never's median went 45 µs -> 160 µs between runs
    /// of the same code minutes apart.
    static var appendLatency: BenchmarkThresholds { BenchmarkThresholds(relative: [.p50: 300, .p90: 300]) }
    /// Raw wall clock, p50 only (baseline comparisons): its p90 measures the neighbours.
    static var time: BenchmarkThresholds { BenchmarkThresholds(relative: [.p50: 100]) }
    /// Rates (throughput, events/s), p50 only (baseline comparisons): a regression below half the
    /// reference. Not at p90: 1.38.1 writes a larger-is-better metric's fast-side p90 into the
    /// threshold file but checks a run's slow side against it.
    static var rate: BenchmarkThresholds { BenchmarkThresholds(relative: [.p50: 50]) }
    /// Allocation counts: deterministic for reads and queries (a change of half either way is
    /// flagged, so an improvement asks for new thresholds), not for appends (RocksDB's flush and
    /// compaction threads allocate too and the counters are process-wide): only doubling there.
    static var mallocs: BenchmarkThresholds { BenchmarkThresholds(relative: [.p50: 50, .p90: 50]) }
    static var appendMallocs: BenchmarkThresholds { BenchmarkThresholds(relative: [.p50: 100, .p90: 100]) }

    static var common: [BenchmarkMetric: BenchmarkThresholds] {
        [latencyMedian: latency, .wallClock: time, .throughput: rate, .mallocCountTotal: mallocs]
    }
    static var append: [BenchmarkMetric: BenchmarkThresholds] {
        [latencyMedian: appendLatency, .wallClock: time, .throughput: rate, eventsPerSecond: rate, .mallocCountTotal: appendMallocs]
    }
}

/// Retain/release counts crash with the MallocInterposer trait, CPU times come in 10 ms scheduler
/// ticks on Linux and this VM has no hardware performance counters (no `instructions`): wall
/// clock, throughput, malloc counts and the two custom metrics.
let commonMetrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal, latencyMedian]

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// `count` events over `nanos` nanoseconds, as the `events/s` metric's integer.
func eventsRate(_ count: Int, nanos: Double) -> Int {
    Int((Double(count) * 1e9 / max(nanos, 1)).rounded())
}

/// The last 15 iteration latencies of one benchmark, for `latencyMedian`.
final class LatencyWindow: @unchecked Sendable {
    private var samples: [Int] = []
    private var next = 0

    /// Ends the measured region that began at `started`, records the latency and its rolling
    /// median; returns the latency in nanoseconds.
    @discardableResult
    func stop(_ benchmark: Benchmark, since started: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - started
        benchmark.stopMeasurement()
        let nanos = elapsed.seconds * 1e9
        if samples.count < 15 {
            samples.append(Int(nanos))
        } else {
            samples[next] = Int(nanos)
            next = (next + 1) % 15
        }
        benchmark.measurement(latencyMedian, samples.sorted()[samples.count / 2])
        return nanos
    }
}

let benchmarks: @Sendable () -> Void = {
    registerAppendBenchmarks()
    registerFillSeqBenchmarks()
    registerDecodeBenchmarks()
    registerReadBenchmarks()
    registerQueryBenchmarks()
}

// MARK: - Appends

func registerAppendBenchmarks() {
    for durability in Durability.allCases {
        for batchSize in [1, 100, 1_000] {
            let fixture = AppendFixture(batchSize: batchSize, durability: durability)
            let window = LatencyWindow()
            Benchmark(
                "Append.b\(batchSize).\(durability.rawValue)",
                configuration: .init(
                    metrics: commonMetrics + [eventsPerSecond], warmupIterations: 5,
                    maxDuration: .seconds(4), maxIterations: 50_000, thresholds: Tolerance.append)
            ) { benchmark in
                let batch = fixture.nextBatch()
                benchmark.startMeasurement()
                let started = ContinuousClock.now
                try await fixture.store.append(batch)
                let nanos = window.stop(benchmark, since: started)
                benchmark.measurement(eventsPerSecond, eventsRate(batch.count, nanos: nanos))
            } setup: {
                try await fixture.setUp()
            } teardown: {
                fixture.tearDown()
            }
        }
    }
}

/// `Append.fillseq.*`: db_bench's fillseq shape, for `tools/append_vs_dbbench.sh`. Each iteration
/// opens an empty store, appends `fillSeqEvents` events in client batches of 1,000 one after the
/// other, and reports events / total time, flushes and stalls included, as db_bench reports
/// operations / total time for the same number of keys.
let fillSeqEvents = 500_000

func registerFillSeqBenchmarks() {
    for durability in [Durability.group, .never] {
        let fixture = AppendFixture(batchSize: 1_000, durability: durability)
        Benchmark(
            "Append.fillseq.\(durability.rawValue)",
            configuration: .init(
                metrics: [.wallClock, eventsPerSecond], warmupIterations: 1,
                maxDuration: .seconds(60), maxIterations: 5, thresholds: [eventsPerSecond: Tolerance.rate])
        ) { benchmark in
            try await fixture.openFreshStore()
            let batches = fixture.sequentialBatches(events: fillSeqEvents)
            benchmark.startMeasurement()
            let started = ContinuousClock.now
            for batch in batches { try await fixture.store.append(batch) }
            let elapsed = ContinuousClock.now - started
            benchmark.stopMeasurement()
            benchmark.measurement(eventsPerSecond, eventsRate(fillSeqEvents, nanos: elapsed.seconds * 1e9))
        } teardown: {
            fixture.tearDown()
        }
    }
}

/// `Decode.batch1000`: the request-side half of HTTP ingest, one `POST /v1/events` body of 1,000
/// events (the append fixture's events, about 250 bytes each, with parents) decoded by the
/// streaming batch decoder, payloads re-serialised.
func registerDecodeBenchmarks() {
    let fixture = AppendFixture(batchSize: 1_000, durability: .never)
    var body: [UInt8] = []
    let window = LatencyWindow()
    Benchmark(
        "Decode.batch1000",
        configuration: .init(
            metrics: commonMetrics + [eventsPerSecond], warmupIterations: 5,
            maxDuration: .seconds(3), maxIterations: 20_000, thresholds: Tolerance.common)
    ) { benchmark in
        benchmark.startMeasurement()
        let started = ContinuousClock.now
        let events = try AppendRequest.decodeBatch(body, ndjson: false, limits: Limits())
        let nanos = window.stop(benchmark, since: started)
        precondition(events.count == 1_000)
        benchmark.measurement(eventsPerSecond, eventsRate(1_000, nanos: nanos))
    } setup: {
        var text = "["
        for (k, request) in fixture.templates.prefix(1_000).enumerated() {
            if k > 0 { text += "," }
            let payload = String(decoding: request.payload ?? [], as: UTF8.self)
            text += "{\"type\":\"\(request.type)\",\"parents\":[\(k + 1),\(k / 2 + 1)],\"stream\":\"\(request.stream ?? "")\",\"payload\":\(payload)}"
        }
        body = Array((text + "]").utf8)
    }
}

// MARK: - Reads

func registerReadBenchmarks() {
    // One `event(id)` per iteration, ids uniform over the store. Single reads, not an inner loop:
    // an iteration far shorter than a scheduler time slice runs uninterrupted or not at all, so
    // its rolling median ignores neighbours that take the CPU away.
    let byID = DAGFixture()
    let byIDWindow = LatencyWindow()
    var ids: [EventID] = []
    var round = 0
    Benchmark(
        "Read.eventByID",
        configuration: .init(
            metrics: commonMetrics, maxDuration: .seconds(3), maxIterations: 200_000, thresholds: Tolerance.common)
    ) { benchmark in
        let id = ids[round & 65_535]
        round += 1
        benchmark.startMeasurement()
        let started = ContinuousClock.now
        let event = try byID.store.event(id)
        byIDWindow.stop(benchmark, since: started)
        blackHole(event)
    } setup: {
        try await byID.setUp()
        var rng = SplitMix64(seed: 11)
        let last = byID.store.lastID
        ids = (0..<65_536).map { _ in EventID(rng.int(1...Int(last))) }
    } teardown: {
        byID.tearDown()
    }

    // One `events(after:limit: 1000)` per iteration, at a random position.
    let range = DAGFixture()
    let rangeWindow = LatencyWindow()
    var rangeRNG = SplitMix64(seed: 12)
    Benchmark(
        "Read.eventsAfter1000",
        configuration: .init(
            metrics: commonMetrics, maxDuration: .seconds(3), maxIterations: 100_000, thresholds: Tolerance.common)
    ) { benchmark in
        let after = EventID(rangeRNG.int(0...Int(range.store.lastID - 1_000)))
        benchmark.startMeasurement()
        let started = ContinuousClock.now
        let events = try range.store.events(after: after, limit: 1_000)
        rangeWindow.stop(benchmark, since: started)
        if events.count != 1_000 { benchmark.error("events(after: \(after)) returned \(events.count) events") }
        blackHole(events)
    } setup: {
        try await range.setUp()
    } teardown: {
        range.tearDown()
    }

    // One `page(after:limit: 1000, filter: type)` per iteration: the type's events after a
    // random position (about a fifth of the events are task.completed).
    let page = DAGFixture()
    let pageWindow = LatencyWindow()
    var pageRNG = SplitMix64(seed: 13)
    Benchmark(
        "Read.pageByType1000",
        configuration: .init(
            metrics: commonMetrics, maxDuration: .seconds(3), maxIterations: 100_000, thresholds: Tolerance.common)
    ) { benchmark in
        let after = EventID(pageRNG.int(0...Int(page.store.lastID / 2)))
        benchmark.startMeasurement()
        let started = ContinuousClock.now
        let result = try page.store.page(after: after, limit: 1_000, filter: LogFilter(type: "task.completed"))
        pageWindow.stop(benchmark, since: started)
        if result.events.count != 1_000 { benchmark.error("page(after: \(after)) returned \(result.events.count) events") }
        blackHole(result)
    } setup: {
        try await page.setUp()
    } teardown: {
        page.tearDown()
    }
}

// MARK: - Queries

/// Every query form of docs/QUERY_LANGUAGE.md on the shared synthetic DAG, through
/// `Executor.run(text, store:)` (parse, analyse, plan, execute: what `POST /v1/query` and
/// `banyan query` do). X = `deep` (a checkpoint with ~10k ancestors), E = `early` (most of the
/// log descends from it), Y = `late` (a checkpoint with ~10k descendants), T = the last event.
let queryForms: [(name: String, text: @Sendable (DAGPicks) -> String)] = [
    ("Query.countAncestors", { "count(ancestors(\($0.deep)))" }),
    ("Query.ancestorsTypeLimit100", { "ancestors(\($0.deep)) where type = \"task.completed\" limit 100" }),
    ("Query.ancestorsAttemptGt1", { "ancestors(\($0.deep)) where payload.attempt > 1" }),
    ("Query.rootsOfAncestors", { "roots(ancestors(\($0.deep)))" }),
    ("Query.countDescendants", { "count(descendants(\($0.early)))" }),
    ("Query.descendantsDepth3", { "descendants(\($0.early), depth <= 3)" }),
    ("Query.headsOfDescendants", { "heads(descendants(\($0.late)))" }),
    ("Query.between", { "between(\($0.early), \($0.deep))" }),
    ("Query.path", { "path(\($0.early), \($0.tip))" }),
    ("Query.pathsLimit5", { "paths(\($0.early), \($0.tip)) limit 5" }),
    ("Query.streamNewest20", { "events where stream = \"\($0.stream)\" order by id desc limit 20" }),
]

func registerQueryBenchmarks() {
    for form in queryForms {
        let fixture = DAGFixture()
        let window = LatencyWindow()
        var text = ""
        Benchmark(
            form.name,
            configuration: .init(
                metrics: commonMetrics, maxDuration: .seconds(3), maxIterations: 100_000, thresholds: Tolerance.common)
        ) { benchmark in
            benchmark.startMeasurement()
            let started = ContinuousClock.now
            let result = try Executor.run(text, store: fixture.store)
            window.stop(benchmark, since: started)
            blackHole(result)
        } setup: {
            try await fixture.setUp()
            text = form.text(fixture.picks)
            // Run it once: a query that fails, comes back empty or hits a budget is a broken
            // benchmark, not a fast one.
            let result = try Executor.run(text, store: fixture.store)
            let size: Int
            switch result.answer {
            case .ids(let ids): size = ids.count
            case .count(let n): size = n
            case .paths(let paths): size = paths.count
            }
            guard !result.truncated, size > 0 else {
                throw BenchError("\(text): \(size) results, truncated: \(result.reason ?? "no")")
            }
            if ProcessInfo.processInfo.environment["BANYAN_BENCH_VERBOSE"] != nil {
                FileHandle.standardError.write(Data("\n\(form.name): \(text) -> \(size) results, \(result.visited) visited\n".utf8))
            }
        } teardown: {
            fixture.tearDown()
        }
    }
}
