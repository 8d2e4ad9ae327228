/// Turns an analysed query into a logical plan. Pure: no store access, so plans are golden-tested.
///
/// Choices it makes: an `events` scan uses the stream index when the filter's top-level
/// conjunction pins `stream = "..."`, else the type index for `type = "..."`, else the log;
/// `paths` without a limit searches for at most `pathsDefault` paths (enumeration is always
/// bounded); `follow matching` moves the filter into the traversal.
public enum Planner {
    public static let pathsDefault = 10

    public static func plan(_ query: AnalyzedQuery) throws(QueryError) -> LogicalPlan {
        try plan(query.statement.selection)
    }

    static func plan(_ selection: Selection) throws(QueryError) -> LogicalPlan {
        var predicate = try selection.filter.map { (c) throws(QueryError) in try Analyzer.predicate(c) }
        var node: LogicalPlan
        switch selection.source {
        case .events:
            let source = scanSource(predicate)
            node = .scan(source)
            // The index guarantees its own condition: what is left needs no record read for it.
            predicate = predicate.flatMap { residual($0, without: source) }
        case .ancestors(let start, let depth), .descendants(let start, let depth):
            let direction: LogicalPlan.Traversal.Direction
            if case .ancestors = selection.source { direction = .ancestors } else { direction = .descendants }
            node = .traverse(.init(direction: direction, start: start, depth: depth, follow: selection.followMatchingOnly ? predicate : nil))
        case .path(let a, let b):
            node = .pathSearch(from: a, to: b, k: 1)
        case .paths(let a, let b):
            node = .pathSearch(from: a, to: b, k: selection.limit?.count ?? pathsDefault)
        case .between(let a, let b):
            node = .between(from: a, to: b)
        case .roots(let inner), .heads(let inner), .count(let inner):
            let operation: LogicalPlan.SetOperation
            switch selection.source {
            case .roots: operation = .roots
            case .heads: operation = .heads
            default: operation = .count
            }
            node = .sets(operation, input: try plan(inner))
        }
        if let predicate { node = .filter(predicate, input: node) }
        if let order = selection.order { node = .sort(order, input: node) }
        if let limit = selection.limit, !Self.isPaths(selection.source) { node = .limit(limit.count, input: node) }
        return node
    }

    private static func isPaths(_ source: Source) -> Bool {
        if case .paths = source { return true }
        return false
    }

    /// `predicate` without the one top-level conjunct that `source` already guarantees; nil when
    /// nothing is left.
    static func residual(_ predicate: Predicate, without source: LogicalPlan.ScanSource) -> Predicate? {
        let guaranteed: Predicate
        switch source {
        case .log: return predicate
        case .stream(let s): guaranteed = .compare(.stream, .equal, .string(s))
        case .type(let t): guaranteed = .compare(.type, .equal, .string(t))
        }
        var removed = false
        func strip(_ p: Predicate) -> Predicate? {
            if !removed && p == guaranteed {
                removed = true
                return nil
            }
            guard case .and(let a, let b) = p else { return p }
            switch (strip(a), strip(b)) {
            case (nil, nil): return nil
            case (let x?, nil): return x
            case (nil, let y?): return y
            case (let x?, let y?): return .and(x, y)
            }
        }
        return strip(predicate)
    }

    /// The index an `events` scan can use: an equality on stream or type in the top-level conjunction.
    static func scanSource(_ predicate: Predicate?) -> LogicalPlan.ScanSource {
        var stream: String?
        var type: String?
        func visit(_ p: Predicate) {
            switch p {
            case .and(let a, let b):
                visit(a)
                visit(b)
            case .compare(.stream, .equal, .string(let s)): stream = stream ?? s
            case .compare(.type, .equal, .string(let t)): type = type ?? t
            default: break
            }
        }
        if let predicate { visit(predicate) }
        if let stream { return .stream(stream) }
        if let type { return .type(type) }
        return .log
    }
}
