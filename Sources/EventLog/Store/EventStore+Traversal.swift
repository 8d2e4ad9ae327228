/// Graph traversals over the committed log. Iterative (explicit queues, never recursion), with a
/// visited bitset over the id range the topological order allows, and a node budget that aborts.
extension EventStore {
    /// Every ancestor of `id` (not `id` itself), ascending. nil if `id` does not exist.
    /// Throws `.limitExceeded` after visiting `nodesMax` events (default `Limits.traversalNodesMax`).
    public func ancestors(of id: EventID, nodesMax: Int? = nil) throws(LogError) -> [EventID]? {
        guard id >= 1, id <= lastID else { return nil }
        let budget = nodesMax ?? limits.traversalNodesMax
        var visited = IDBitset(lower: 1, upper: id)
        visited.insert(id)
        var frontier: [EventID] = [id]
        var found: [EventID] = []
        while let next = frontier.popLast() {
            for parent in index.parents(of: next) where visited.insert(parent) {
                found.append(parent)
                guard found.count <= budget else {
                    throw LogError(.limitExceeded, "ancestors of \(id) exceed the node budget of \(budget)")
                }
                frontier.append(parent)
            }
        }
        found.sort()
        return found
    }

    /// Every descendant of `id` (not `id` itself), ascending. nil if `id` does not exist.
    public func descendants(of id: EventID, nodesMax: Int? = nil) throws(LogError) -> [EventID]? {
        let last = lastID
        guard id >= 1, id <= last else { return nil }
        let budget = nodesMax ?? limits.traversalNodesMax
        var visited = IDBitset(lower: id, upper: last)
        visited.insert(id)
        var frontier: [EventID] = [id]
        var found: [EventID] = []
        while let next = frontier.popLast() {
            let children = index.children(of: next, upTo: last)
            for child in children where child <= last && visited.insert(child) {
                found.append(child)
                guard found.count <= budget else {
                    throw LogError(.limitExceeded, "descendants of \(id) exceed the node budget of \(budget)")
                }
                frontier.append(child)
            }
        }
        found.sort()
        return found
    }

    /// The roots (events without parents) reachable from `id` by following parents, ascending;
    /// `[id]` when `id` is itself a root. nil if `id` does not exist. This is CelestialTree's
    /// `/ancestors/{id}`.
    public func reachableRoots(of id: EventID, nodesMax: Int? = nil) throws(LogError) -> [EventID]? {
        guard id >= 1, id <= lastID else { return nil }
        let budget = nodesMax ?? limits.traversalNodesMax
        var visited = IDBitset(lower: 1, upper: id)
        visited.insert(id)
        var frontier: [EventID] = [id]
        var roots: [EventID] = []
        var count = 1
        while let next = frontier.popLast() {
            let parents = index.parents(of: next)
            if parents.isEmpty { roots.append(next) }
            for parent in parents where visited.insert(parent) {
                count += 1
                guard count <= budget else {
                    throw LogError(.limitExceeded, "ancestors of \(id) exceed the node budget of \(budget)")
                }
                frontier.append(parent)
            }
        }
        roots.sort()
        return roots
    }
}
