import EventLog

/// Runs a logical plan against the store. Sources materialise sorted id lists; every loop counts
/// visited events against the node budget and checks the clock, and a spent budget stops the
/// work with `truncated` set, never a runaway query.
public struct Executor {
    let store: EventStore
    let budget: QueryBudget
    let deadline: ContinuousClock.Instant
    /// The last id the query sees: events appended while it runs (or between the pages of one
    /// answer, which each re-run it) stay out of it.
    let last: EventID
    private(set) var visited = 0
    /// Compacted events a content condition met (`QueryResult.compacted`).
    private(set) var compactedMet = 0
    private(set) var stop: String?

    public init(store: EventStore, budget: QueryBudget = QueryBudget(), snapshot: EventID? = nil) {
        self.store = store
        self.budget = budget
        last = min(snapshot ?? store.lastID, store.lastID)
        deadline = .now + budget.timeMax
    }

    /// Parses, analyses, plans and runs `text`.
    public static func run(_ text: String, store: EventStore, budget: QueryBudget = QueryBudget()) throws -> QueryResult {
        var executor = Executor(store: store, budget: budget)
        return try executor.run(Planner.plan(Analyzer.analyze(text)))
    }

    public mutating func run(_ plan: LogicalPlan) throws -> QueryResult {
        let answer = try evaluate(plan)
        let first = store.firstID
        return QueryResult(
            answer: answer, truncated: stop != nil, reason: stop, visited: visited, compacted: compactedMet,
            prunedBelow: first > 1 ? first : nil)
    }

    /// `predicate` on `event`, counting a compacted event whose verdict depends on dropped content.
    private mutating func matches(_ predicate: Predicate, _ event: Event) -> Bool {
        guard event.compaction != nil, predicate.readsContent else { return predicate.matches(event) }
        let verdict = predicate.judge(event)
        if verdict == nil { compactedMet += 1 }
        return verdict == true
    }

    /// Counts `units` of work (a visited event, or one id of a path in the answer); false once a
    /// budget is spent (the reason is kept). The clock is read once per 1,024 units.
    mutating func spend(_ units: Int = 1) -> Bool {
        guard stop == nil else { return false }
        let before = visited
        visited += units
        if visited > budget.nodesMax {
            stop = "node budget of \(budget.nodesMax) events spent"
            return false
        }
        if visited >> 10 != before >> 10, ContinuousClock.now > deadline {
            stop = "time budget spent"
            return false
        }
        return true
    }

    /// False once the time budget is spent: for loops whose steps are each worth a clock read
    /// (one record read, one column chunk), where counting nodes alone would not stop in time.
    mutating func timeLeft() -> Bool {
        guard stop == nil else { return false }
        if ContinuousClock.now > deadline {
            stop = "time budget spent"
            return false
        }
        return true
    }

    /// Thrown from inside a store callback to end its iteration once a budget is spent.
    private struct Spent: Error {}

    private mutating func evaluate(_ plan: LogicalPlan) throws -> QueryResult.Answer {
        switch plan {
        case .scan(let source): return .ids(try scan(source))
        case .traverse(let traversal): return .ids(try traverse(traversal))
        case .pathSearch(let from, let to, let k): return .paths(try paths(from: resolve(from), to: resolve(to), k: k))
        case .between(let from, let to): return .ids(try between(resolve(from), resolve(to)))
        case .filter(let predicate, let input):
            switch try evaluate(input) {
            case .ids(let ids):
                var kept: [EventID] = []
                guard zip(ids, ids.dropFirst()).allSatisfy({ $0 < $1 }) else {
                    for id in ids {
                        guard timeLeft() else { break }
                        if let event = try store.event(id), matches(predicate, event) { kept.append(id) }
                    }
                    return .ids(kept)
                }
                let deadline = self.deadline
                // Work since the clock was read: an event, and one more per KiB of its message
                // and payload. The clock once 64 have passed: read per event it was 2% of a
                // filter's time, and an event of 63 KiB or more reads it at once.
                var work = 0
                do {
                    try store.forEachEvent(ascending: ids) { event in
                        work += 1 + ((event.payload?.count ?? 0) + (event.message?.utf8.count ?? 0)) >> 10
                        if work >= 64 {
                            work = 0
                            guard ContinuousClock.now <= deadline else { throw Spent() }
                        }
                        if matches(predicate, event) { kept.append(event.id) }
                    }
                } catch is Spent {
                    _ = timeLeft()
                }
                return .ids(kept)
            case .paths(let paths):
                // A path is kept when every event on it matches.
                var kept: [[EventID]] = []
                for path in paths {
                    guard timeLeft() else { break }
                    if try path.allSatisfy({ id in try store.event(id).map { matches(predicate, $0) } ?? false }) { kept.append(path) }
                }
                return .paths(kept)
            case .count(let n): return .count(n)
            }
        case .sets(let operation, let input):
            let inner = try evaluate(input)
            guard case .ids(let ids) = inner else { return inner }
            switch operation {
            case .count: return .count(ids.count)
            case .roots, .heads: return .ids(try boundary(ids, roots: operation == .roots))
            }
        case .sort(let order, let input):
            let inner = try evaluate(input)
            guard case .ids(let ids) = inner else { return inner }
            if order.key == .id { return .ids(order.descending ? ids.sorted(by: >) : ids.sorted()) }
            var timed: [(EventID, Int64)] = []
            for id in ids {
                guard timeLeft() else { break }
                timed.append((id, try store.event(id)?.timeUnixNano ?? 0))
            }
            timed.sort { a, b in a.1 != b.1 ? (order.descending ? a.1 > b.1 : a.1 < b.1) : (order.descending ? a.0 > b.0 : a.0 < b.0) }
            return .ids(timed.map(\.0))
        case .limit(let n, let input):
            switch try evaluate(input) {
            case .ids(let ids): return .ids(Array(ids.prefix(n)))
            case .paths(let paths): return .paths(Array(paths.prefix(n)))
            case .count(let c): return .count(c)
            }
        }
    }

    func resolve(_ start: Start) throws -> EventID {
        switch start {
        case .id(let id, let range):
            guard id <= last else { throw QueryError(.analysis, "event \(id) does not exist", range: range) }
            try store.checkNotPruned(id)
            return id
        case .key(let key, let range):
            guard let id = try store.id(forKey: key), id <= last else { throw QueryError(.analysis, "no event has key \(key.debugDescription)", range: range) }
            try store.checkNotPruned(id)
            return id
        }
    }

    /// Ids of the source from the in-memory columns, one chunk at a time; no record is read.
    private mutating func scan(_ source: LogicalPlan.ScanSource) throws -> [EventID] {
        var type: String?
        var stream: String?
        switch source {
        case .log: break
        case .stream(let s): stream = s
        case .type(let t): type = t
        }
        var ids: [EventID] = []
        var cursor: EventID = 0
        while cursor < last {
            let chunk = try store.scanIDs(type: type, stream: stream, after: cursor, upTo: last, limit: Self.scanChunkIDs, scanMax: Self.scanChunkIDs)
            for id in chunk.ids {
                guard spend() else { return ids }
                ids.append(id)
            }
            guard chunk.next > cursor, timeLeft() else { return ids }
            cursor = chunk.next
        }
        return ids
    }

    /// Ids one column scan step examines (about 0.1 ms): the clock is read between steps.
    static let scanChunkIDs = 65_536

    /// Breadth-first (`EventLog.Traversal`), so each event's depth is its shortest hop distance
    /// from the start.
    private mutating func traverse(_ t: LogicalPlan.Traversal) throws -> [EventID] {
        let start = try resolve(t.start)
        var walk = store.traversal(t.direction == .ancestors ? .ancestors : .descendants, from: start, upTo: last)
        var found: [EventID] = []
        let store = self.store
        try walk.breadthFirst(depthMax: t.depth.max ?? .max) { node, depth in
            guard spend() else { return .stop }
            if let follow = t.follow, try !(store.event(node).map(follow.matches) ?? false) { return .skip }
            if depth >= t.depth.min { found.append(node) }
            return .follow
        }
        return found.sorted()
    }

    /// Descendants of `a` that are ancestors of `b`, plus both ends, ascending. Ids bound both
    /// walks: nothing outside [a, b] can be on such a path.
    private mutating func between(_ a: EventID, _ b: EventID) throws -> [EventID] {
        if a == b { return [a] }
        guard a < b else { return [] }
        var down = store.traversal(.descendants, from: a, upTo: b)
        down.breadthFirst { _, _ in spend() ? .follow : .stop }
        guard stop == nil, down.visited.contains(b) else { return [] }
        var up = store.traversal(.ancestors, from: b, lower: a)
        var result: [EventID] = [b]
        up.breadthFirst { node, _ in
            // Only descendants of `a` can lie on a path from `a`.
            guard down.visited.contains(node) else { return .skip }
            guard spend() else { return .stop }
            result.append(node)
            return .follow
        }
        return result.sorted()
    }

    /// Up to `k` paths from `a` to `b`, shortest first (ties in a fixed order).
    ///
    /// First a breadth-first walk up from `b` gives every ancestor of `b` in `[a, b]` its hop
    /// distance to `b` (ids bound the walk: nothing below `a` can be on a path). That distance is
    /// exact, so a best-first expansion of partial paths from `a`, ordered by length so far plus
    /// distance left, completes paths in length order and expands only partial paths that can
    /// still reach `b`: about k x path length of them, not the exponential number a plain
    /// breadth-first enumeration meets. Each walked event and each partial path costs one unit
    /// of the node budget, and each path found costs its length. For k = 1 the upward walk stops as soon as it reaches `a`, and the path
    /// is read off greedily.
    private mutating func paths(from a: EventID, to b: EventID, k: Int) throws -> [[EventID]] {
        if a == b { return [[a]] }
        guard a < b, k >= 1 else { return [] }
        guard let distance = distances(to: b, from: a, stopAtStart: k == 1), let total = distance[a] else { return [] }
        let forward = store.traversal(.descendants, from: a, upTo: b)
        if k == 1 {
            var path = [a]
            var node = a
            while node != b {
                guard let here = distance[node] else { return [] }
                let need = here - 1
                guard let next = forward.links(of: node).first(where: { distance[$0] == need }) else { return [] }
                path.append(next)
                node = next
            }
            return spend(path.count) ? [path] : []
        }
        // Partial paths as a parent-pointer tree; buckets[f - total] holds the entries whose
        // length-so-far + distance-left is f. A child's f is never below its parent's, so the
        // lowest non-empty bucket only moves up; popping a bucket's last entry goes deep first.
        var tree: [(node: EventID, previous: Int, hops: Int32)] = [(a, -1, 0)]
        var buckets: [[Int]] = [[0]]
        var lowest = 0
        var found: [[EventID]] = []
        while found.count < k {
            while lowest < buckets.count, buckets[lowest].isEmpty { lowest += 1 }
            guard lowest < buckets.count, let entry = buckets[lowest].popLast() else { break }
            let (node, _, hops) = tree[entry]
            if node == b {
                var path: [EventID] = []
                var i = entry
                while i >= 0 {
                    path.append(tree[i].node)
                    i = tree[i].previous
                }
                // The answer is part of the work: a path's ids count against the node budget, so
                // k long paths cannot make a response of k x length ids past the budget.
                guard spend(path.count) else { return found }
                found.append(path.reversed())
                continue
            }
            for child in forward.links(of: node) {
                guard let left = distance[child] else { continue }
                guard spend() else { return found }
                let bucket = Int(hops + 1 + left - total)
                while buckets.count <= bucket { buckets.append([]) }
                buckets[bucket].append(tree.count)
                tree.append((child, entry, hops + 1))
            }
        }
        return found
    }

    /// Hop distances to `b` of its ancestors in `[a, b]` (and of `b`, 0), by a breadth-first
    /// walk up; nil when the budget ran out. With `stopAtStart`, stops once `a` is reached: every
    /// distance below `a`'s is then final, which is all a greedy shortest path needs.
    private mutating func distances(to b: EventID, from a: EventID, stopAtStart: Bool) -> DistanceMap? {
        var distance = DistanceMap(lower: a, upper: b)
        distance[b] = 0
        var walk = store.traversal(.ancestors, from: b, lower: a)
        var reachedStart = false
        walk.breadthFirst { node, depth in
            guard spend() else { return .stop }
            distance[node] = Int32(depth)
            if stopAtStart && node == a {
                reachedStart = true
                return .stop
            }
            return .follow
        }
        return stop == nil || reachedStart ? distance : nil
    }

    /// Events of `ids` with no parent (roots) or no child (heads) inside `ids`.
    private mutating func boundary(_ ids: [EventID], roots: Bool) throws -> [EventID] {
        let members = Set(ids)
        var result: [EventID] = []
        for id in ids {
            guard spend() else { return result }
            let links = roots ? try store.parents(of: id) ?? [] : try store.children(of: id, limit: store.limits.traversalNodesMax, upTo: last) ?? []
            if !links.contains(where: members.contains) { result.append(id) }
        }
        return result
    }
}

/// Hop distances over the id range `[lower, upper]`: a flat array when the range is small enough
/// (4 bytes per id, at most 16 MB), a dictionary of the visited ids otherwise.
struct DistanceMap {
    static let flatRangeMax: UInt64 = 4 << 20
    let lower: EventID
    private var flat: [Int32]
    private var sparse: [EventID: Int32] = [:]

    init(lower: EventID, upper: EventID) {
        self.lower = lower
        flat = upper - lower < Self.flatRangeMax ? [Int32](repeating: -1, count: Int(upper - lower) + 1) : []
    }

    subscript(id: EventID) -> Int32? {
        get {
            if flat.isEmpty { return sparse[id] }
            let d = flat[Int(id - lower)]
            return d < 0 ? nil : d
        }
        set {
            if flat.isEmpty { sparse[id] = newValue } else { flat[Int(id - lower)] = newValue ?? -1 }
        }
    }
}
