import EventLog

/// What the executor will do, as a tree of operators. Produced by `Planner` (a pure function of
/// the analysed query) and printed by `explain`.
public indirect enum LogicalPlan: Sendable, Hashable {
    /// Read events in id order: the whole log, or one in-memory column of `LogIndex` (stream, type) pinned by an
    /// equality in the filter.
    case scan(ScanSource)
    /// Walk parent or child links from a start, visiting ids only inside `idRange`
    /// (ancestors of x live in [1, x), descendants in (x, last]), up to `depth` hops.
    case traverse(Traversal)
    /// One shortest path, or up to `k` of them, shortest first, searched inside (a, b).
    case pathSearch(from: Start, to: Start, k: Int)
    /// Descendants of `from` intersected with ancestors of `to`, plus both ends.
    case between(from: Start, to: Start)
    case filter(Predicate, input: LogicalPlan)
    case sets(SetOperation, input: LogicalPlan)
    case sort(Order, input: LogicalPlan)
    case limit(Int, input: LogicalPlan)

    public enum ScanSource: Sendable, Hashable {
        case log
        case stream(String)
        case type(String)
    }

    public enum SetOperation: String, Sendable, Hashable {
        case roots, heads, count
    }

    public struct Traversal: Sendable, Hashable {
        public enum Direction: String, Sendable, Hashable { case ancestors, descendants }
        public var direction: Direction
        public var start: Start
        public var depth: DepthRange
        /// `follow matching`: expand only events that satisfy this predicate.
        public var follow: Predicate?
    }
}
