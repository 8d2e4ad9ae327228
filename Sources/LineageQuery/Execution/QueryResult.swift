import EventLog

/// Bounds on one query's work. The defaults are `Limits`' (`queryNodesDefault`,
/// `queryTimeDefault`); servers may lower or raise them per request up to an operator's maximum.
public struct QueryBudget: Sendable, Hashable {
    /// Events one query may visit (traversal, scan or path search).
    public var nodesMax = Limits().queryNodesDefault
    public var timeMax: Duration = Limits().queryTimeDefault
    public init() {}

    /// The default budget of a server with these limits.
    public init(defaultOf limits: Limits) {
        self.init(nodesMax: limits.queryNodesDefault, timeMax: limits.queryTimeDefault)
    }
    public init(nodesMax: Int, timeMax: Duration) {
        self.nodesMax = nodesMax
        self.timeMax = timeMax
    }
}

/// The answer of one query.
public struct QueryResult: Sendable {
    public enum Answer: Sendable {
        /// Event ids, in the order the query asked for.
        case ids([EventID])
        case count(Int)
        /// Paths as id lists, each from the start to the end.
        case paths([[EventID]])
    }
    public var answer: Answer
    /// True when a budget stopped the work; `reason` says which. The answer is then partial.
    public var truncated = false
    public var reason: String?
    /// Events visited.
    public var visited = 0
    /// Compacted events whose verdict depended on their dropped message or payload: unknown,
    /// so not matched (docs/QUERY_LANGUAGE.md, Compacted events).
    public var compacted = 0
    /// The store's first id when it was pruned: the answer covers ids from there only
    /// (docs/QUERY_LANGUAGE.md, Pruned stores). nil for a store that holds its whole log.
    public var prunedBelow: EventID?
}

extension QueryResult {
    /// A complete answer, as servers that keep answers between pages hold them.
    public init(answer: Answer) {
        self.answer = answer
    }
}
