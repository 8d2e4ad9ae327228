import BanyanClient

/// The history of runs (`GET /v1/runs`): one summary per run, folded from the run-level events
/// of the log and brought up to date before every answer, so it shows every run recorded
/// before the request. It reads each run-level type from where it got to
/// (`GET /v1/events?type=`, which the server answers from its in-memory columns), so a refresh
/// costs a few requests however long the log is. Memory: one summary per run (about 200 bytes
/// plus its names).
public actor RunIndex {
    public typealias State = RunLifecycle.State

    public struct Summary: Sendable {
        public var run: String
        public var workflow: String
        /// The definition's hash (`RunEvents.version(of:)`).
        public var version: String
        /// The id of its request: the order of the history, and its cursor.
        public var requestID: UInt64
        public var requestedAtUnixNano: Int64
        public var lifecycle = RunLifecycle()
        /// A child run's parent attempt (`sub_workflow`).
        public var parent: String?
        public var state: State { lifecycle.state }
    }

    public struct Filter: Sendable {
        public var workflow: String?
        public var states: Set<State>?
        /// Requested at or after / before (Unix nanoseconds, the server's clock).
        public var since: Int64?
        public var until: Int64?

        public init(workflow: String? = nil, states: Set<State>? = nil, since: Int64? = nil, until: Int64? = nil) {
            self.workflow = workflow
            self.states = states
            self.since = since
            self.until = until
        }

        func matches(_ s: Summary) -> Bool {
            if let workflow, s.workflow != workflow { return false }
            if let states, !states.contains(s.state) { return false }
            if let since, s.requestedAtUnixNano < since { return false }
            if let until, s.requestedAtUnixNano >= until { return false }
            return true
        }
    }

    public struct Page: Sendable {
        public var runs: [Summary]
        /// Runs matching the filter, over all pages.
        public var total: Int
        public var hasMore: Bool
        /// The cursor of the next page (the last run's request id), when there is one.
        public var next: UInt64?
    }

    /// The types read, the request first: an event read before its run's request (both
    /// recorded between two reads) waits in `early` until the request is read.
    static let types = ["workflow.run.requested"] + RunLifecycle.types

    private var runs: [String: Summary] = [:]
    /// Run ids by request id, ascending (requests are read in log order).
    private var order: [String] = []
    private var cursors: [String: UInt64] = [:]
    private var early: [String: [RunEvents.Recorded]] = [:]

    public init() {}

    /// Reads what was recorded since the last refresh, with `client` (the caller's token).
    public func refresh(_ client: BanyanHTTPClient) async throws {
        if cursors.isEmpty {
            let start = try await RunEvents.logStart(client)
            for type in Self.types { cursors[type] = start }
        }
        for type in Self.types {
            let next = try await RunEvents.readPages(client, after: cursors[type] ?? 0, type: type) { events in
                for event in events { apply(event) }
            }
            // Refreshes may interleave (the actor is re-entered at each read): never back.
            cursors[type] = max(cursors[type] ?? 0, next)
        }
    }

    private func apply(_ event: RunEvents.Recorded) {
        guard let run = event.payload["run"]?.stringValue else { return }
        if event.type == "workflow.run.requested" {
            guard runs[run] == nil else { return }
            runs[run] = Summary(
                run: run, workflow: event.payload["workflow"]?.stringValue ?? "", version: event.payload["version"]?.stringValue ?? "",
                requestID: event.id, requestedAtUnixNano: event.timeUnixNano, parent: event.payload["parent"]?.stringValue)
            order.append(run)
            for e in early.removeValue(forKey: run) ?? [] { apply(e) }
            return
        }
        guard runs[run] != nil else {
            // Its request was read already if it came before the requests' cursor: a run that
            // is not in the log (pruned, or never requested) is not waited for.
            if event.id > cursors["workflow.run.requested"] ?? 0 { early[run, default: []].append(event) }
            return
        }
        runs[run]!.lifecycle.apply(event)
    }

    public func summary(_ run: String) -> Summary? { runs[run] }

    /// One page of the history: newest first unless `ascending`, after the run whose request id
    /// is `cursor`.
    public func list(_ filter: Filter, limit: Int, cursor: UInt64?, ascending: Bool) -> Page {
        var total = 0
        var page: [Summary] = []
        var hasMore = false
        let ids = ascending ? AnySequence(order) : AnySequence(order.reversed())
        for run in ids {
            guard let s = runs[run], filter.matches(s) else { continue }
            total += 1
            if let cursor, ascending ? s.requestID <= cursor : s.requestID >= cursor { continue }
            if page.count < limit { page.append(s) } else { hasMore = true }
        }
        return Page(runs: page, total: total, hasMore: hasMore, next: hasMore ? page.last?.requestID : nil)
    }

    /// Runs by state.
    public func counts() -> [State: Int] {
        var counts: [State: Int] = [:]
        for s in runs.values { counts[s.state, default: 0] += 1 }
        return counts
    }

    /// Runs that have not ended, by workflow.
    public func active() -> [String: Int] {
        var counts: [String: Int] = [:]
        for s in runs.values where !s.state.ended { counts[s.workflow, default: 0] += 1 }
        return counts
    }
}
