/// The one graph walk of the code base: ancestors and descendants for the store's reads,
/// `ancestors(...)`/`descendants(...)`/`between`/`path` for the query executor, and the links
/// and visited set of CelestialTree's trees.
///
/// Ids are a topological order, so a walk knows the id range it can reach before it starts
/// (ancestors of x in `[lower, x]`, descendants in `[x, upper]`, `upper` being the last id when
/// it started, so events appended meanwhile never enter it) and keeps its visited set as one bit
/// per id of that range. Links come from the in-memory `LogIndex`: array reads, no RocksDB.
/// Budgets are the caller's: `visit` stops the walk.
public struct Traversal {
    public enum Direction: Sendable {
        case ancestors, descendants
    }

    /// What `visit` wants done with an event the walk reached.
    public enum Step {
        /// Walk on through its links.
        case follow
        /// Do not walk through it (it stays visited).
        case skip
        /// End the walk.
        case stop
    }

    public let direction: Direction
    public let start: EventID
    /// The ids the walk may reach (and the range of its visited set).
    public let lower: EventID
    public let upper: EventID
    @usableFromInline var _visited: IDBitset
    public var visited: IDBitset { _visited }
    @usableFromInline let index: LogIndex

    init(index: LogIndex, direction: Direction, start: EventID, lower: EventID, upper: EventID) {
        self.index = index
        self.direction = direction
        self.start = start
        self.lower = lower
        self.upper = upper
        _visited = IDBitset(lower: lower, upper: upper)
        _visited.insert(start)
    }

    /// The links of `id` the walk follows: parents (in the event's own order) or children
    /// (ascending), within `lower...upper`. All of them: a walk's budget bounds its work, and a
    /// cap here would cut an answer silently.
    public func links(of id: EventID) -> [EventID] {
        let links = unboundedLinks(of: id)
        return direction == .ancestors && lower > 1 ? links.filter { $0 >= lower } : links
    }

    /// `links(of:)`, or nil when `id` has more than `countMax` of them, found without walking
    /// the rest of a long list of children (a caller with a node budget refuses such an event).
    public func links(of id: EventID, countMax: Int) -> [EventID]? {
        guard direction == .descendants else {
            // Parents are few (`Limits.parentsPerEventMax`).
            let links = links(of: id)
            return links.count > countMax ? nil : links
        }
        return index.children(of: id, upTo: upper, countMax: countMax)
    }

    /// Parents, or children up to `upper`; parents below `lower` are the caller's to skip
    /// (filtering here would allocate an array per event of a walk).
    @usableFromInline
    func unboundedLinks(of id: EventID) -> [EventID] {
        direction == .ancestors ? index.parents(of: id) : index.children(of: id, upTo: upper)
    }

    /// Marks `id` visited; false if it already was.
    public mutating func markVisited(_ id: EventID) -> Bool {
        _visited.insert(id)
    }

    /// Breadth-first from `start` (so each event's depth is its shortest hop distance): calls
    /// `visit(event, depth)` once for every event reached within `depthMax` hops, the start
    /// excluded, in order of depth.
    @inlinable
    public mutating func breadthFirst(depthMax: Int = .max, _ visit: (EventID, Int) throws -> Step) rethrows {
        var frontier = [start]
        var next: [EventID] = []
        var depth = 0
        while !frontier.isEmpty, depth < depthMax {
            depth += 1
            for node in frontier {
                for link in unboundedLinks(of: node) where link >= lower && _visited.insert(link) {
                    switch try visit(link, depth) {
                    case .follow: next.append(link)
                    case .skip: break
                    case .stop: return
                    }
                }
            }
            // Two buffers, swapped level by level: no allocation per level of a deep walk.
            swap(&frontier, &next)
            next.removeAll(keepingCapacity: true)
        }
    }
}

extension EventStore {
    /// A walk from `start` (which must exist, `<= upTo`, and not be pruned) over the events up to
    /// `upTo` (default: the last committed id), optionally kept to ids `>= lower` (for walks
    /// between two events). It never enters a pruned prefix: `lower` is at least `firstID`, and a
    /// start below it (callers check with `checkNotPruned` first) walks nowhere.
    public func traversal(_ direction: Traversal.Direction, from start: EventID, lower: EventID = 1, upTo: EventID? = nil) -> Traversal {
        let last = min(upTo ?? lastID, lastID)
        let first = firstID
        if start < first {
            return Traversal(index: index, direction: direction, start: start, lower: start, upper: start)
        }
        switch direction {
        case .ancestors:
            return Traversal(index: index, direction: direction, start: start, lower: max(first, lower), upper: start)
        case .descendants:
            return Traversal(index: index, direction: direction, start: start, lower: start, upper: max(start, last))
        }
    }
}
