import EventLog

/// Builds CelestialTree's nested descendants/provenance trees straight into JSON, iteratively.
///
/// Semantics (CelestialTree's): DFS pre-order from the start event; descendants list children
/// by id ascending, provenance lists parents in the event's own order; a node met again in the
/// same tree is written as a reference (`"is_ref":true` and `null` children/parents); leaves get
/// `[]`. The explicit stack means a 26,000-deep chain costs heap, not call stack, and the node
/// budget (`Limits.treeNodesMax`, shared by every tree of one request) bounds time and memory.
struct TreeEncoder {
    enum Direction {
        case descendants, provenance
        var linkField: StaticString { self == .descendants ? ",\"children\":" : ",\"parents\":" }
    }

    enum View: String {
        case `struct`, meta
    }

    struct TooLarge: Error {
        var nodesMax: Int
    }

    let store: EventStore
    let direction: Direction
    let view: View
    let nodesMax: Int
    private(set) var nodes = 0

    init(store: EventStore, direction: Direction, view: View, nodesMax: Int) {
        self.store = store
        self.direction = direction
        self.view = view
        self.nodesMax = nodesMax
    }

    /// Writes the tree rooted at `start` (which must exist).
    mutating func write(_ start: EventID, into w: inout JSONWriter) throws {
        let last = store.lastID
        var visited = direction == .descendants ? IDBitset(lower: start, upper: last) : IDBitset(lower: 1, upper: start)
        visited.insert(start)
        try open(start, isRef: false, into: &w)
        var stack: [(links: [EventID], next: Int)] = [(try links(of: start), 0)]
        w.writeRaw("[")
        while !stack.isEmpty {
            let top = stack.count - 1
            guard stack[top].next < stack[top].links.count else {
                w.writeRaw("]}")
                stack.removeLast()
                continue
            }
            let node = stack[top].links[stack[top].next]
            stack[top].next += 1
            if stack[top].next > 1 { w.writeRaw(",") }
            if visited.insert(node) {
                try open(node, isRef: false, into: &w)
                w.writeRaw("[")
                stack.append((try links(of: node), 0))
            } else {
                try open(node, isRef: true, into: &w)
                w.writeRaw("null}")
            }
        }
    }

    private func links(of id: EventID) throws -> [EventID] {
        switch direction {
        case .descendants: return try store.children(of: id, limit: nodesMax) ?? []
        case .provenance: return try store.parents(of: id) ?? []
        }
    }

    /// Writes `{"id":…,…,"is_ref":…,"children":` (the caller writes the list or `null}`).
    private mutating func open(_ id: EventID, isRef: Bool, into w: inout JSONWriter) throws {
        nodes += 1
        guard nodes <= nodesMax else { throw TooLarge(nodesMax: nodesMax) }
        w.writeRaw("{\"id\":")
        w.writeUInt(id)
        if view == .meta {
            guard let event = try store.event(id) else { throw LogError(.notFound, "event \(id) vanished") }
            w.writeRaw(",\"time_unix_nano\":")
            w.writeInt(event.timeUnixNano)
            w.writeRaw(",\"type\":")
            w.writeString(event.type)
            w.writeRaw(",\"is_ref\":")
            w.writeBool(isRef)
            if let message = event.message {
                w.writeRaw(",\"message\":")
                w.writeString(message)
            }
            if let payload = event.payload {
                w.writeRaw(",\"payload\":")
                w.writeRaw(payload)
            }
        } else {
            w.writeRaw(",\"is_ref\":")
            w.writeBool(isRef)
        }
        w.writeRaw(direction.linkField)
    }
}
