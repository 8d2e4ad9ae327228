import EventLog
import HTTPTypes
import NIOCore

/// CelestialTree's `GET /provenance/{id}` and `GET /descendants/{id}` on the event loop
/// (`EventLoopPaths`): checked as the route checks them (`SiteGuard`, the token), built by the
/// routes' own `CelestialTreeAPI.trees`, on the event loop when that is cheap and bounded
/// (`inlineNodesMax`), else on the heavy pool and answered from its callback.
///
/// Served here: a plain `GET` of either route with a decimal id, no body, no `Expect`, no
/// `Upgrade`, no `Connection: close`, and no read-your-writes wait (`min_id` or
/// `Banyan-Min-Id`: that wait needs a task). A path or query the route would refuse (a bad id, a
/// bad `view`, bad percent-encoding) goes to the responder, which answers it as before.
struct FastTree: Sendable {
    let store: EventStore
    let treeMeta: TreeMetaCache
    let access: AccessControl
    let site: SiteGuard

    /// What a request served here asks for.
    struct Ask: Sendable {
        var id: EventID
        var direction: TreeEncoder.Direction
        var view: TreeEncoder.View
    }

    private static let prefixes: [(String, TreeEncoder.Direction)] = [("/provenance/", .provenance), ("/descendants/", .descendants)]

    /// What `head` asks for when it is served here, else nil.
    func ask(_ head: HTTPRequest) -> Ask? {
        guard head.method == .get, let target = head.path, (Pipelining.contentLength(head) ?? 0) == 0,
            head.headerFields[.transferEncoding] == nil, head.headerFields[.expect] == nil, head.headerFields[.upgrade] == nil,
            head.headerFields[ReadGate.header] == nil, !Pipelining.asksToClose(head),
            let (prefix, direction) = Self.prefixes.first(where: { target.hasPrefix($0.0) })
        else { return nil }
        let rest = target.dropFirst(prefix.count)
        let question = rest.firstIndex(of: "?")
        guard let id = try? PathID.parse(rest[..<(question ?? rest.endIndex)]) else { return nil }
        guard let question else { return Ask(id: id, direction: direction, view: .struct) }
        let query = rest[rest.index(after: question)...]
        // Hummingbird's URI would read these differently (a fragment, a scheme): leave them to it.
        guard !query.contains("#"), !query.contains("://"), let parameters = try? QueryString(query: query),
            parameters.get("min_id") == nil, let view = try? CelestialTreeAPI.view(parameters.get("view"))
        else { return nil }
        return Ask(id: id, direction: direction, view: view)
    }

    /// Trees up to this size are built on the event loop itself, which spares a small tree the
    /// two thread hops of the heavy pool (about a fifth of its latency: docs/PERFORMANCE.md); a
    /// tree that passes them is built again on the heavy pool. A larger bound spares more trees
    /// the hops but wastes more on the trees that pass it; 256, 512 and 1,000 were measured.
    /// What the event loop spends on a request is bounded by these, by `inlineRangeMax`, by
    /// `TreeEncoder` fetching an event's links only up to the nodes its budget has left (a hub's
    /// whole list of children is not walked), and by the meta view's members having to be in
    /// the cache (`readsStorage` false: the event loop never waits for storage).
    static let inlineNodesMax = 512
    static let inlineBytesMax = 256 << 10
    /// The widest id range the walk may span (`[first id, id]` for a provenance, `[id, last id]`
    /// for descendants) to be built on the event loop: its visited set is one bit per id of the
    /// range, zeroed per walk (128 KiB here, twice for the meta view).
    static let inlineRangeMax: UInt64 = 1 << 20

    /// Checks the request as the route does and builds its tree, here if it is small, else on
    /// the heavy pool; `done` gets the answer's JSON (on the pool's thread, or at once).
    func start(_ ask: Ask, for head: HTTPRequest, done: @escaping @Sendable (Result<[UInt8], any Error>) -> Void) {
        let (store, treeMeta, budget) = (store, treeMeta, CelestialTreeAPI.budget(store))
        do {
            // The route's order: the site, the token.
            try site.check(head)
            try access.authorize(authorization: head.headerFields[.authorization], needs: .read)
            let range = ask.direction == .provenance ? ask.id &- store.firstID : store.lastID &- ask.id
            // Without a cache a meta view is never built here: it would always need storage.
            if range <= Self.inlineRangeMax, ask.view == .struct || treeMeta.bytesMax > 0 {
                var inline = budget
                inline.nodesMax = min(inline.nodesMax, Self.inlineNodesMax)
                inline.bytesMax = min(inline.bytesMax, Self.inlineBytesMax)
                inline.readsStorage = false
                let tree = try CelestialTreeAPI.writeTrees([ask.id], ask.direction, ask.view, batch: false, store: store, treeMeta: treeMeta, budget: inline)
                return done(.success(tree.bytes))
            }
        } catch is TreeEncoder.TooLarge, is TreeEncoder.NeedsStorage {
            // More than what is built here: built again on the heavy pool, under the route's own budget.
        } catch {
            return done(.failure(error))
        }
        Blocking.submitHeavy({
            try CelestialTreeAPI.trees([ask.id], ask.direction, ask.view, batch: false, store: store, treeMeta: treeMeta, budget: budget).bytes
        }, done: done)
    }
}

extension TreeEncoder.Direction {
    /// The route's pattern, which labels its requests in the metrics.
    var route: String { self == .provenance ? "/provenance/{id}" : "/descendants/{id}" }
}
