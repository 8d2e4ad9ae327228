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

    /// The response would pass one of its budgets: nodes, bytes or time.
    struct TooLarge: Error {
        var reason: String
    }

    struct Budget {
        var nodesMax: Int
        var bytesMax: Int
        var deadline: ContinuousClock.Instant
        /// False: the meta view's members come from the cache alone (`FastTree` on the event
        /// loop, which must not wait for storage), else `NeedsStorage` is thrown.
        var readsStorage = true
    }

    /// The meta view needs events the cache does not hold, and the budget reads no storage.
    struct NeedsStorage: Error {}

    /// What a node of the `meta` view holds besides its id (CelestialTree's `ProvenanceNodeMeta`).
    static let metaFields: EventJSON.Fields = [.time, .type, .message, .payload]

    let store: EventStore
    let metaCache: TreeMetaCache
    let direction: Direction
    let view: View
    let budget: Budget
    /// Events appended while a tree is built are not part of it: the walk is bounded by the last id at its start.
    let last: EventID
    private(set) var nodes = 0
    /// The meta view's members of every event of the tree being written, each encoded or copied
    /// from the cache once (`prepareMeta`): ids ascending, and where each one's bytes are in
    /// `metaBytes` (an empty range at -1 for one that was not found).
    private var metaIDs: [EventID] = []
    private var metaRanges: [Range<Int>] = []
    private var metaBytes: [UInt8] = []

    init(store: EventStore, metaCache: TreeMetaCache, direction: Direction, view: View, budget: Budget) {
        self.store = store
        self.metaCache = metaCache
        self.direction = direction
        self.view = view
        self.budget = budget
        last = store.lastID
    }

    /// Writes the tree rooted at `start` (which must exist and be `<= last`).
    mutating func write(_ start: EventID, into w: inout JSONWriter) throws {
        if view == .meta {
            try prepareMeta(start, spent: w.bytes.count)
            // The tree opens every event at least once: its meta bytes and each node's frame are
            // a floor on what is written, reserved at once rather than grown by doubling through
            // megabytes of copies. At least doubled (a batch reserves once per tree: exact
            // reservations would copy the whole answer for each), and never past the byte
            // budget, at which the answer is refused anyway.
            let floor = w.bytes.count + metaBytes.count + metaIDs.count * frameBytes
            if floor > w.bytes.capacity {
                w.bytes.reserveCapacity(min(max(floor, 2 * w.bytes.capacity), budget.bytesMax + 1))
            }
        }
        // The walk's links and visited set; the depth-first order is this encoder's, since the
        // tree nests children inside their parent.
        var walk = store.traversal(direction == .descendants ? .descendants : .ancestors, from: start, upTo: last)
        try open(start, isRef: false, into: &w)
        // Links fetched but not yet written: each of them will be a node.
        var pending = 0
        var stack: [(links: [EventID], next: Int)] = [(try links(walk, of: start, nodesFree: budget.nodesMax - nodes), 0)]
        pending += stack[0].links.count
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
            pending -= 1
            if stack[top].next > 1 { w.writeRaw(",") }
            if walk.markVisited(node) {
                try open(node, isRef: false, into: &w)
                w.writeRaw("[")
                let links = try links(walk, of: node, nodesFree: budget.nodesMax - nodes - pending)
                pending += links.count
                stack.append((links, 0))
            } else {
                try open(node, isRef: true, into: &w)
                w.writeRaw("null}")
            }
        }
    }

    /// The links of `id`. Each one will be a node of the tree (expanded or a reference), so more
    /// of them than `nodesFree` (the nodes the budget has left once the nodes written and the
    /// links already fetched are counted) make the tree too large: found without walking them
    /// all, so that fetching links costs at most the node budget, however wide the events.
    private func links(_ walk: Traversal, of id: EventID, nodesFree: Int) throws -> [EventID] {
        guard let links = walk.links(of: id, countMax: max(0, nodesFree)) else {
            throw TooLarge(reason: "more than \(budget.nodesMax) nodes (tree node limit)")
        }
        return links
    }

    /// The fewest bytes of a node besides its id or meta members: `{`, `,"is_ref":false`, the
    /// link member and `[]}` (a reference's frame is a byte longer).
    private var frameBytes: Int { 1 + 15 + direction.linkField.utf8CodeUnitCount + 3 }

    /// Writes `{"id":…,…,"is_ref":…,"children":` (the caller writes the list or `null}`).
    private mutating func open(_ id: EventID, isRef: Bool, into w: inout JSONWriter) throws {
        nodes += 1
        guard nodes <= budget.nodesMax else { throw TooLarge(reason: "more than \(budget.nodesMax) nodes (tree node limit)") }
        guard w.bytes.count <= budget.bytesMax else { throw TooLarge(reason: "more than \(budget.bytesMax) bytes (tree byte limit)") }
        if nodes % 1_024 == 0, ContinuousClock.now > budget.deadline {
            throw TooLarge(reason: "longer than the tree time limit to build")
        }
        w.writeRaw("{")
        if view == .meta {
            let at = metaIDs.partitioningIndex { $0 >= id }
            guard at < metaIDs.count, metaIDs[at] == id, metaRanges[at].lowerBound >= 0 else { throw LogError(.notFound, "event \(id) vanished") }
            w.bytes.append(contentsOf: metaBytes[metaRanges[at]])
        } else {
            w.writeRaw("\"id\":")
            w.writeUInt(id)
        }
        w.writeRaw(",\"is_ref\":")
        w.writeBool(isRef)
        w.writeRaw(direction.linkField)
    }

    /// Copies the meta members of every event the tree holds from the cache, reads the others
    /// once, in id order through one iterator, encodes them and offers them to the cache: a tree
    /// names an event as often as paths reach it (a merge-heavy history repeats most of them),
    /// and point reads in depth-first order cost several times a step of the iterator. The bytes
    /// are at most the response's (each event is written at least once), so the byte budget,
    /// less what the response already holds (`spent`), bounds them too.
    private mutating func prepareMeta(_ start: EventID, spent: Int) throws {
        var walk = store.traversal(direction == .descendants ? .descendants : .ancestors, from: start, upTo: last)
        var ids: [EventID] = [start]
        // `write` opens the start and every link of every event it expands (each event once):
        // `written` counts those, so the walk stops as soon as the tree cannot fit.
        var written = 1
        // Breadth-first, the order does not matter: the ids are sorted next.
        var frontier = [start]
        var next: [EventID] = []
        while !frontier.isEmpty {
            for node in frontier {
                let links = try links(walk, of: node, nodesFree: budget.nodesMax - nodes - written)
                written += links.count
                for link in links where walk.markVisited(link) {
                    ids.append(link)
                    next.append(link)
                }
            }
            swap(&frontier, &next)
            next.removeAll(keepingCapacity: true)
        }
        ids.sort()
        metaIDs = ids
        metaRanges = Array(repeating: -1 ..< -1, count: ids.count)
        var w = JSONWriter(capacity: ids.count * 128)
        let tooLarge = TooLarge(reason: "more than \(budget.bytesMax) bytes (tree byte limit)")
        let readAt = store.rewriteCount
        // A try that may not read storage gives up before it counts lookups or refreshes members.
        guard budget.readsStorage || metaCache.holds(ids, rewrites: readAt) else { throw NeedsStorage() }
        guard let missing = metaCache.copy(ids, rewrites: readAt, into: &w, bytesMax: budget.bytesMax - spent, found: { metaRanges[$0] = $1 }) else {
            throw tooLarge
        }
        // A member may have left the cache since the probe.
        guard missing.isEmpty || budget.readsStorage else { throw NeedsStorage() }
        var k = 0
        try store.forEachRecord(ascending: missing.map { ids[$0] }) { record in
            // Events that are not there are skipped: they keep their empty range.
            while ids[missing[k]] != record.id { k += 1 }
            let start = w.bytes.count
            EventJSON.writeMembers(record, fields: Self.metaFields, into: &w)
            metaRanges[missing[k]] = start..<w.bytes.count
            k += 1
            guard spent + w.bytes.count <= budget.bytesMax else { throw tooLarge }
            if k % 1_024 == 0, ContinuousClock.now > budget.deadline {
                throw TooLarge(reason: "longer than the tree time limit to build")
            }
        }
        metaCache.keep(
            missing.compactMap { at in metaRanges[at].lowerBound < 0 ? nil : (ids[at], w.bytes[metaRanges[at]]) }, readAt: readAt,
            now: store.rewriteCount)
        metaBytes = w.bytes
    }
}
