import BanyanClient

/// The history of runs (`GET /v1/runs`): one summary per run, folded from the run-level events
/// of the log and brought up to date before every answer, so it shows every run recorded
/// before the request. It reads each run-level type from where it got to
/// (`GET /v1/events?type=`, which the server answers from its in-memory columns), so a refresh
/// costs a few requests however long the log is. Memory: one summary per run (about 200 bytes
/// plus its names).
public actor RunIndex {
    public enum State: String, Sendable, CaseIterable {
        /// Requested; no engine has started it yet.
        case pending
        case running
        /// Paused: no new attempt starts until it is resumed.
        case paused
        /// Its cancel request is recorded; it has not ended yet.
        case cancelling
        case completed, failed, cancelled

        public var ended: Bool { self == .completed || self == .failed || self == .cancelled }
    }

    public struct Summary: Sendable {
        public var run: String
        public var workflow: String
        /// The definition's hash (`RunEvents.version(of:)`).
        public var version: String
        /// The id of its request: the order of the history, and its cursor.
        public var requestID: UInt64
        public var requestedAtUnixNano: Int64
        public var startedAtUnixNano: Int64?
        public var endedAtUnixNano: Int64?
        public var state: State = .pending
        /// A failed run's task and error, a cancelled run's reason.
        public var error: String?
        /// A child run's parent attempt (`sub_workflow`).
        public var parent: String?
        /// A Swift (code-first) run.
        public var code: Bool
        /// Its latest pause and resume (numbered from 1).
        public var pauses = 0
        public var resumes = 0
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

    /// The types read, in this order: an end read before its request (both recorded between two
    /// reads) waits in `early` until the request is read.
    static let types = [
        "workflow.run.requested", "workflow.run.started", "workflow.run.cancel_requested", "workflow.run.completed", "workflow.run.failed",
        "workflow.run.cancelled", "workflow.run.paused", "workflow.run.resumed",
    ]

    private var runs: [String: Summary] = [:]
    /// Run ids by request id, ascending (requests are read in log order).
    private var order: [String] = []
    private var cursors: [String: UInt64] = [:]
    private var early: [String: [RunEvents.Recorded]] = [:]

    public init() {}

    /// Reads what was recorded since the last refresh, with `client` (the caller's token).
    public func refresh(_ client: BanyanHTTPClient) async throws {
        for type in Self.types {
            var after = cursors[type] ?? 0
            while true {
                let page: (events: [RunEvents.Recorded], next: UInt64, last: UInt64)
                do { page = try RunEvents.page(try await client.page(after: after, limit: 10_000, type: type)) } catch let e as JSONText.Error {
                    throw Engine.EngineError.log("\(e)")
                }
                for event in page.events { apply(event) }
                guard page.next > after else { break }
                after = page.next
                // Refreshes may interleave (the actor is re-entered at each read): never back.
                cursors[type] = max(cursors[type] ?? 0, after)
                if page.next >= page.last { break }
            }
        }
    }

    private func apply(_ event: RunEvents.Recorded) {
        guard let run = event.payload["run"]?.stringValue else { return }
        if event.type == "workflow.run.requested" {
            guard runs[run] == nil else { return }
            runs[run] = Summary(
                run: run, workflow: event.payload["workflow"]?.stringValue ?? "", version: event.payload["version"]?.stringValue ?? "",
                requestID: event.id, requestedAtUnixNano: event.timeUnixNano, parent: event.payload["parent"]?.stringValue,
                code: event.payload["code"] == .bool(true))
            order.append(run)
            for e in early.removeValue(forKey: run) ?? [] { apply(e) }
            return
        }
        guard var s = runs[run] else {
            early[run, default: []].append(event)
            return
        }
        switch event.type {
        case "workflow.run.started":
            s.startedAtUnixNano = event.timeUnixNano
            if s.state == .pending { s.state = .running }
        case "workflow.run.cancel_requested":
            if !s.state.ended { s.state = .cancelling }
        case "workflow.run.paused":
            s.pauses = max(s.pauses, event.payload["pause"]?.intValue ?? 0)
            if s.pauses > s.resumes, s.state == .pending || s.state == .running { s.state = .paused }
        case "workflow.run.resumed":
            s.resumes = max(s.resumes, event.payload["pause"]?.intValue ?? 0)
            if s.state == .paused, s.resumes >= s.pauses { s.state = s.startedAtUnixNano == nil ? .pending : .running }
        case "workflow.run.completed", "workflow.run.failed", "workflow.run.cancelled":
            s.endedAtUnixNano = event.timeUnixNano
            s.state = State(rawValue: String(event.type.dropFirst("workflow.run.".count))) ?? .failed
            s.error = RunStatus.endError(event)
        default: return
        }
        runs[run] = s
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

    /// Runs of `workflow` that have not ended.
    public func active(workflow: String) -> Int {
        order.reduce(0) { n, run in runs[run].map { $0.workflow == workflow && !$0.state.ended } == true ? n + 1 : n }
    }
}
