import Foundation
import EventLog
import CoreMetrics
import Prometheus
import Synchronization

/// The server's metrics: swift-metrics instruments backed by a Prometheus registry of this
/// instance's own (no global bootstrap, so several servers can live in one process, as in tests).
/// Also the store's `StoreObserver`, fed by the writer thread once per commit group.
///
/// Thread-safe: the instruments are; the per-route timer cache is behind a `Mutex`.
public final class ServerMetrics: StoreObserver, Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let appended: CoreMetrics.Counter
    private let batches: CoreMetrics.Counter
    private let groups: CoreMetrics.Counter
    private let groupSize: CoreMetrics.Recorder
    private let syncedWrite: CoreMetrics.Timer
    private let unsyncedWrite: CoreMetrics.Timer
    private let lastID: CoreMetrics.Gauge
    private let streamsOpen: CoreMetrics.Gauge
    private let streamLagMax: CoreMetrics.Gauge
    private let streamLagTotal: CoreMetrics.Gauge
    private let walSyncFailures: CoreMetrics.Counter
    private let connectionsOpen: CoreMetrics.Gauge
    private let connectionsMax: CoreMetrics.Gauge
    /// Connections closed by the server, by reason, and the totals already counted.
    private let connectionsClosed: Mutex<[String: (counter: CoreMetrics.Counter, counted: Int)]> = Mutex([:])
    private let engine: Mutex<[String: CoreMetrics.Gauge]> = Mutex([:])
    /// Counters fed from running totals kept elsewhere, and the totals already counted.
    private let totals: Mutex<[String: (counter: CoreMetrics.Counter, counted: Int)]> = Mutex([:])
    /// Per-follower gauges on a leader (applied id, lag in ids, lag in seconds), removed with
    /// the follower, so the label space stays within `ReplicationState.followersMax`.
    private let followerGauges: Mutex<[String: [CoreMetrics.Gauge]]> = Mutex([:])
    private let epoch: CoreMetrics.Gauge
    private let lagIDs: CoreMetrics.Gauge
    private let lagSeconds: CoreMetrics.Gauge
    private let requestTimers: Mutex<[String: CoreMetrics.Timer]> = Mutex([:])
    /// `banyan_http_event_loop_requests_total{route}`: requests answered on the event loop
    /// (`EventLoopPaths`), also counted in `banyan_http_request_duration_seconds`; by route
    /// pattern.
    private let eventLoopRequests: [String: CoreMetrics.Counter]

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["banyan_write_seconds"] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100), .seconds(1),
        ]
        factory.durationHistogramBuckets["banyan_http_request_duration_seconds"] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5),
        ]
        factory.valueHistogramBuckets["banyan_commit_group_events"] = [1, 2, 5, 10, 25, 50, 100, 250, 1_000, 2_500, 10_000, 20_000]
        self.factory = factory
        appended = CoreMetrics.Counter(label: "banyan_events_appended_total", factory: factory)
        batches = CoreMetrics.Counter(label: "banyan_append_batches_total", factory: factory)
        groups = CoreMetrics.Counter(label: "banyan_commit_groups_total", factory: factory)
        groupSize = CoreMetrics.Recorder(label: "banyan_commit_group_events", factory: factory)
        syncedWrite = CoreMetrics.Timer(label: "banyan_write_seconds", dimensions: [("fsync", "true")], factory: factory)
        unsyncedWrite = CoreMetrics.Timer(label: "banyan_write_seconds", dimensions: [("fsync", "false")], factory: factory)
        lastID = CoreMetrics.Gauge(label: "banyan_last_id", factory: factory)
        streamsOpen = CoreMetrics.Gauge(label: "banyan_streams_open", factory: factory)
        streamLagMax = CoreMetrics.Gauge(label: "banyan_stream_lag_events_max", factory: factory)
        streamLagTotal = CoreMetrics.Gauge(label: "banyan_stream_lag_events_total", factory: factory)
        walSyncFailures = CoreMetrics.Counter(label: "banyan_wal_sync_failures_total", factory: factory)
        connectionsOpen = CoreMetrics.Gauge(label: "banyan_connections_open", factory: factory)
        connectionsMax = CoreMetrics.Gauge(label: "banyan_connections_max", factory: factory)
        epoch = CoreMetrics.Gauge(label: "banyan_epoch", factory: factory)
        lagIDs = CoreMetrics.Gauge(label: "banyan_replication_lag_ids", factory: factory)
        lagSeconds = CoreMetrics.Gauge(label: "banyan_replication_lag_seconds", factory: factory)
        eventLoopRequests = Dictionary(uniqueKeysWithValues: [FastEmit.path, TreeEncoder.Direction.provenance.route, TreeEncoder.Direction.descendants.route].map {
            ($0, CoreMetrics.Counter(label: "banyan_http_event_loop_requests_total", dimensions: [("route", $0)], factory: factory))
        })
    }

    /// One request answered on the event loop (`EventLoopPaths`), under its route's pattern.
    func servedOnEventLoop(route: String) { eventLoopRequests[route]?.increment() }

    /// Advances a counter to a running total kept elsewhere.
    private func advance(_ label: String, _ dimensions: [(String, String)], to total: Int) {
        let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        totals.withLock { counters in
            let entry = counters[key] ?? (CoreMetrics.Counter(label: label, dimensions: dimensions, factory: factory), 0)
            if total > entry.counted { entry.counter.increment(by: Int64(total - entry.counted)) }
            counters[key] = (entry.counter, max(total, entry.counted))
        }
    }

    /// Replication: the epoch, what was shipped and applied, role changes, and the lag of each
    /// follower (on a leader) or of this node (on a follower).
    private func record(_ replication: ReplicationState, lastID last: EventID) {
        let store = replication.store
        epoch.record(Int64(clamping: store.epoch))
        let c = replication.counters
        advance("banyan_replication_groups_total", [("direction", "shipped")], to: c.groupsShipped.load(ordering: .relaxed))
        advance("banyan_replication_groups_total", [("direction", "applied")], to: c.groupsApplied.load(ordering: .relaxed))
        advance("banyan_replication_bytes_total", [("direction", "shipped")], to: c.bytesShipped.load(ordering: .relaxed))
        advance("banyan_replication_bytes_total", [("direction", "applied")], to: c.bytesApplied.load(ordering: .relaxed))
        advance("banyan_replication_truncated_events_total", [], to: c.truncatedEvents.load(ordering: .relaxed))
        advance("banyan_promotions_total", [], to: c.promotions.load(ordering: .relaxed))
        advance("banyan_fencings_total", [], to: c.fencings.load(ordering: .relaxed))
        let now = ContinuousClock.now
        let followers = replication.role == .leader ? replication.followers : []
        followerGauges.withLock { gauges in
            let current = Set(followers.map(\.url))
            for (url, set) in gauges where !current.contains(url) {
                for gauge in set { gauge.destroy() }
                gauges.removeValue(forKey: url)
            }
            for f in followers {
                let set = gauges[f.url] ?? ["banyan_follower_applied_id", "banyan_follower_lag_ids", "banyan_follower_lag_seconds"].map {
                    CoreMetrics.Gauge(label: $0, dimensions: [("follower", f.url)], factory: factory)
                }
                gauges[f.url] = set
                set[0].record(Int64(clamping: f.appliedID))
                set[1].record(Int64(clamping: last > f.appliedID ? last - f.appliedID : 0))
                set[2].record(f.appliedID >= last ? 0 : (now - f.caughtUpAt).inSeconds)
            }
        }
        if replication.role != .leader {
            let view = replication.followerView
            let behind = view.leaderLastID > last
            lagIDs.record(Int64(clamping: behind ? view.leaderLastID - last : 0))
            lagSeconds.record(behind ? (now - view.caughtUpAt).inSeconds : 0)
        }
    }

    public func didCommit(events: Int, batches: Int, synced: Bool, writeDuration: Duration) {
        appended.increment(by: Int64(events))
        self.batches.increment(by: Int64(batches))
        groups.increment()
        groupSize.record(Int64(events))
        (synced ? syncedWrite : unsyncedWrite).recordNanoseconds(Self.nanoseconds(writeDuration))
    }

    public func didFailSync(error: String) {
        walSyncFailures.increment()
    }

    /// A maintenance job ended: `banyan_maintenance_jobs_total{kind,outcome}`,
    /// `banyan_maintenance_job_seconds{kind}` and, on success,
    /// `banyan_maintenance_last_success_timestamp_seconds{kind}`. Kinds are a fixed set.
    func maintenanceJob(kind: String, failed: Bool, duration: Duration) {
        CoreMetrics.Counter(label: "banyan_maintenance_jobs_total", dimensions: [("kind", kind), ("outcome", failed ? "failed" : "finished")], factory: factory)
            .increment()
        CoreMetrics.Timer(label: "banyan_maintenance_job_seconds", dimensions: [("kind", kind)], factory: factory).recordNanoseconds(Self.nanoseconds(duration))
        if !failed {
            CoreMetrics.Gauge(label: "banyan_maintenance_last_success_timestamp_seconds", dimensions: [("kind", kind)], factory: factory)
                .record(Date().timeIntervalSince1970)
        }
    }

    /// The last snapshot: `banyan_snapshot_last_id` (its S) and `banyan_snapshot_bytes`.
    func snapshotTaken(id: EventID, bytes: UInt64) {
        CoreMetrics.Gauge(label: "banyan_snapshot_last_id", factory: factory).record(Int64(clamping: id))
        CoreMetrics.Gauge(label: "banyan_snapshot_bytes", factory: factory).record(Int64(clamping: bytes))
    }

    /// A prune: `banyan_prune_events_total` and `banyan_prune_bytes_reclaimed_total`
    /// (`banyan_store_first_id`, the lowest id the store holds, is sampled with the other gauges).
    func pruned(_ result: PruneResult) {
        CoreMetrics.Counter(label: "banyan_prune_events_total", factory: factory).increment(by: Int64(clamping: result.eventsRemoved))
        CoreMetrics.Counter(label: "banyan_prune_bytes_reclaimed_total", factory: factory)
            .increment(by: max(0, Int64(clamping: result.bytesBefore) - Int64(clamping: result.bytesAfter)))
    }

    /// A compaction's work: `banyan_compaction_events_total` (events rewritten) and
    /// `banyan_compaction_bytes_reclaimed_total` (the log family's SST bytes freed).
    func compacted(_ result: CompactionResult) {
        CoreMetrics.Counter(label: "banyan_compaction_events_total", factory: factory).increment(by: Int64(clamping: result.compacted))
        CoreMetrics.Counter(label: "banyan_compaction_bytes_reclaimed_total", factory: factory).increment(by: max(0, result.bytesReclaimed))
    }

    /// Records one HTTP request under its route pattern (never the raw path: ids would explode the
    /// label space), or one gRPC call under its RPC's path.
    package func request(route: String, method: String, status: Int, duration: Duration) {
        let key = "\(route) \(method) \(status)"
        let timer = requestTimers.withLock { timers in
            if let timer = timers[key] { return timer }
            let timer = CoreMetrics.Timer(
                label: "banyan_http_request_duration_seconds",
                dimensions: [("route", route), ("method", method), ("status", String(status))], factory: factory)
            timers[key] = timer
            return timer
        }
        timer.recordNanoseconds(Self.nanoseconds(duration))
    }

    /// Samples the gauges and renders the Prometheus text format.
    func render(store: EventStore, streams: StreamRegistry, connections: ConnectionRegistry, replication: ReplicationState, queryAnswers: QueryAnswers, treeMeta: TreeMetaCache) -> [UInt8] {
        record(replication, lastID: store.lastID)
        let answers = queryAnswers.figures
        CoreMetrics.Gauge(label: "banyan_query_answers_kept", factory: factory).record(Int64(answers.answers))
        CoreMetrics.Gauge(label: "banyan_query_answers_kept_bytes", factory: factory).record(Int64(answers.bytes))
        advance("banyan_query_answer_lookups_total", [("result", "hit")], to: answers.hits)
        advance("banyan_query_answer_lookups_total", [("result", "miss")], to: answers.misses)
        let meta = treeMeta.figures
        CoreMetrics.Gauge(label: "banyan_tree_meta_cache_members", factory: factory).record(Int64(meta.members))
        CoreMetrics.Gauge(label: "banyan_tree_meta_cache_bytes", factory: factory).record(Int64(meta.bytes))
        advance("banyan_tree_meta_cache_lookups_total", [("result", "hit")], to: meta.hits)
        advance("banyan_tree_meta_cache_lookups_total", [("result", "miss")], to: meta.misses)
        connectionsOpen.record(Int64(connections.count))
        connectionsMax.record(Int64(connections.connectionsMax))
        let closed = connections.closedCounts
        var totals = closed.timedOut
        totals["evicted at the connection limit"] = closed.evicted
        connectionsClosed.withLock { counters in
            for (reason, total) in totals {
                let entry = counters[reason] ?? (CoreMetrics.Counter(label: "banyan_connections_closed_total", dimensions: [("reason", reason)], factory: factory), 0)
                if total > entry.counted { entry.counter.increment(by: Int64(total - entry.counted)) }
                counters[reason] = (entry.counter, max(total, entry.counted))
            }
        }
        let last = store.lastID
        lastID.record(Int64(last))
        CoreMetrics.Gauge(label: "banyan_store_first_id", factory: factory).record(Int64(clamping: store.firstID))
        streamsOpen.record(Int64(streams.count))
        let lag = streams.lag(behind: last)
        streamLagMax.record(Int64(lag.max))
        streamLagTotal.record(Int64(lag.total))
        for (name, value) in store.engineStats() {
            let gauge = engine.withLock { gauges in
                if let gauge = gauges[name] { return gauge }
                let gauge = CoreMetrics.Gauge(label: "banyan_rocksdb_\(name)", factory: factory)
                gauges[name] = gauge
                return gauge
            }
            gauge.record(Int64(clamping: value))
        }
        return registry.emitToBuffer()
    }

    private static func nanoseconds(_ d: Duration) -> Int64 {
        let (seconds, atto) = d.components
        return seconds * 1_000_000_000 + atto / 1_000_000_000
    }
}
