import BanyanClient
import Synchronization

/// Which engines are alive, read from their heartbeats in the log (docs/WORKFLOWS.md, "Several
/// engines"). Each engine process (`EngineService`) records `workflow.engine.alive` every
/// `ttl / 3`; an engine is alive while its latest heartbeat is less than its own `ttl` (the
/// `ttl_ms` its heartbeats carry) older than the newest heartbeat seen from any engine (times
/// are the server's, `time_unix_nano`), and less than its ttl has passed on this process's
/// monotonic clock since that heartbeat was first read here. The first rule judges heartbeats
/// recorded before this process began; the second notices a silent engine within its ttl and a
/// read interval, however rarely the others' heartbeats advance the server's time. No rule
/// compares one machine's clock with another's.
final class Liveness: Sendable {
    let ttl: Duration
    private struct State {
        var last: [String: Int64] = [:]
        /// Each engine's own ttl, in nanoseconds, from its heartbeats.
        var ttl: [String: Int64] = [:]
        var newest: Int64 = 0
        var cursor: UInt64?
        /// When each engine's latest heartbeat was first read here.
        var seen: [String: ContinuousClock.Instant] = [:]
        /// The last read of heartbeats that succeeded.
        var lastRead: ContinuousClock.Instant?
    }

    private let state = Mutex(State())

    init(ttl: Duration) {
        self.ttl = ttl
    }

    static let stream = "workflow_engines"
    static let type = "workflow.engine.alive"
    /// Heartbeats are looked for in this many ids before the log's end when an engine starts:
    /// far more than a ttl's worth of events at any rate the server takes.
    static let lookBackIDs: UInt64 = 5_000_000

    /// `incarnation`: random per process, so an engine restarted under the same name records new
    /// heartbeats, not duplicates of its earlier ones.
    static func heartbeat(engine: String, incarnation: String, sequence: UInt64, ttl: Duration) -> RunEvents.Draft {
        RunEvents.Draft(
            type: type, key: "engine/\(engine)/alive/\(incarnation)/\(sequence)", stream: stream, parentKeys: [],
            payload: .object([(key: "engine", value: .text(engine)), (key: "ttl_ms", value: .number(String(Engine.milliseconds(ttl))))]))
    }

    /// Whether `engine`'s latest heartbeat is within the ttl. An engine never seen is not alive.
    func isAlive(_ engine: String?) -> Bool {
        guard let engine else { return false }
        return state.withLock { s in
            guard let last = s.last[engine] else { return false }
            let ttl = s.ttl[engine] ?? Engine.milliseconds(ttl) * 1_000_000
            if let seen = s.seen[engine], ContinuousClock.now - seen >= .nanoseconds(ttl) { return false }
            return s.newest - last < ttl
        }
    }

    /// The engines alive now, by name.
    func alive() -> [String] {
        let engines = state.withLock { Array($0.last.keys) }
        return engines.filter { isAlive($0) }.sorted()
    }

    func knows(_ engine: String) -> Bool {
        state.withLock { $0.last[engine] != nil }
    }

    /// Reads the heartbeats recorded since the last call (the first call looks back
    /// `lookBackIDs` ids).
    func refresh(_ client: BanyanHTTPClient) async throws {
        var after = state.withLock { $0.cursor } ?? 0
        if state.withLock({ $0.cursor == nil }) {
            let end = try await RunEvents.lastID(client)
            after = max(end > Self.lookBackIDs ? end - Self.lookBackIDs : 0, try await RunEvents.logStart(client))
        }
        let next = try await RunEvents.readPages(client, after: after, type: Self.type) { record($0) }
        state.withLock { s in
            s.cursor = next
            // Reads failed for a while (the server out of reach, this process paused): nobody
            // could record heartbeats meanwhile, so the local clock starts again for everyone.
            let now = ContinuousClock.now
            if let last = s.lastRead, now - last > ttl / 2 {
                for engine in s.seen.keys { s.seen[engine] = now }
            }
            s.lastRead = now
        }
    }

    func record(_ events: [RunEvents.Recorded]) {
        state.withLock { s in
            for event in events {
                guard let engine = event.payload["engine"]?.stringValue else { continue }
                if event.timeUnixNano > s.last[engine] ?? 0 { s.seen[engine] = .now }
                s.last[engine] = max(s.last[engine] ?? 0, event.timeUnixNano)
                if let ms = event.payload["ttl_ms"]?.intValue, ms > 0 { s.ttl[engine] = Int64(ms) * 1_000_000 }
                s.newest = max(s.newest, event.timeUnixNano)
            }
            // Engines gone for long are forgotten (each process has an id of its own).
            let horizon = s.newest - Engine.milliseconds(ttl) * 100_000_000
            if s.last.count > 1_000 {
                s.last = s.last.filter { $0.value >= horizon }
                s.ttl = s.ttl.filter { s.last[$0.key] != nil }
                s.seen = s.seen.filter { s.last[$0.key] != nil }
            }
        }
    }
}
