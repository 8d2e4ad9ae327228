/// The store's own walks (CelestialTree's `/ancestors`, `/descendants` lists and the CLI), on
/// `Traversal`, with a node budget that aborts.
extension EventStore {
    /// Every ancestor of `id` (not `id` itself), ascending. nil if `id` does not exist.
    /// Throws `.limitExceeded` after visiting `nodesMax` events (default `Limits.traversalNodesMax`).
    public func ancestors(of id: EventID, nodesMax: Int? = nil) throws(LogError) -> [EventID]? {
        try collect(.ancestors, from: id, nodesMax: nodesMax)
    }

    /// Every descendant of `id` (not `id` itself), ascending. nil if `id` does not exist.
    public func descendants(of id: EventID, nodesMax: Int? = nil) throws(LogError) -> [EventID]? {
        try collect(.descendants, from: id, nodesMax: nodesMax)
    }

    private func collect(_ direction: Traversal.Direction, from id: EventID, nodesMax: Int?) throws(LogError) -> [EventID]? {
        try checkNotPruned(id)
        guard id >= 1, id <= lastID else { return nil }
        let budget = nodesMax ?? limits.traversalNodesMax
        var walk = traversal(direction, from: id)
        var found: [EventID] = []
        walk.breadthFirst { node, _ in
            found.append(node)
            return found.count <= budget ? .follow : .stop
        }
        guard found.count <= budget else {
            throw LogError(.limitExceeded, "\(direction == .ancestors ? "ancestors" : "descendants") of \(id) exceed the node budget of \(budget)")
        }
        found.sort()
        return found
    }

    /// The roots (events without parents) reachable from `id` by following parents, ascending;
    /// `[id]` when `id` is itself a root. nil if `id` does not exist. This is CelestialTree's
    /// `/ancestors/{id}`.
    public func reachableRoots(of id: EventID, nodesMax: Int? = nil) throws(LogError) -> [EventID]? {
        try checkNotPruned(id)
        guard id >= 1, id <= lastID else { return nil }
        let budget = nodesMax ?? limits.traversalNodesMax
        var walk = traversal(.ancestors, from: id)
        let index = self.index
        var roots: [EventID] = index.hasParents(id) ? [] : [id]
        var count = 1
        walk.breadthFirst { node, _ in
            count += 1
            guard count <= budget else { return .stop }
            if !index.hasParents(node) { roots.append(node) }
            return .follow
        }
        guard count <= budget else { throw LogError(.limitExceeded, "ancestors of \(id) exceed the node budget of \(budget)") }
        roots.sort()
        return roots
    }
}
