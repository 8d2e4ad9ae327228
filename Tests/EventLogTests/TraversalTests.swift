import Testing
import TestSupport
@testable import EventLog

/// Traversals on seeded random DAGs against a naive in-memory reference.
struct TraversalTests {
    struct Reference {
        var parents: [[EventID]] = [[]]  // index = id; 0 unused

        func ancestors(_ id: EventID) -> [EventID] {
            var seen = Set<EventID>()
            var stack = parents[Int(id)]
            while let p = stack.popLast() {
                if seen.insert(p).inserted { stack += parents[Int(p)] }
            }
            return seen.sorted()
        }

        func descendants(_ id: EventID, _ ancestorSets: [Set<EventID>]) -> [EventID] {
            (1..<parents.count).map(EventID.init).filter { ancestorSets[Int($0)].contains(id) }
        }

        func children(_ id: EventID) -> [EventID] {
            (1..<parents.count).map(EventID.init).filter { parents[Int($0)].contains(id) }
        }
    }

    /// The in-memory index is built by the writer batch by batch (with rejected batches rolled
    /// back in between), then rebuilt from the `index` family on reopen; both must agree with the
    /// reference.
    @Test(arguments: [0, 1, 2])
    func traversalsAgreeWithTheNaiveReference(round: Int) async throws {
        let seed = SeededRandom.seed("TraversalTests round \(round)") &+ UInt64(round)
        var rng = SeededRandom(seed: seed)
        let t = try await TempStore.make("traversal\(round)")
        defer { t.remove() }
        var reference = Reference()
        var batch: [AppendRequest] = []
        let count = 300
        for id in 1...count {
            var parents: [EventID] = []
            if id > 1 && Int.random(in: 0..<10, using: &rng) > 0 {
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    // Mostly recent parents, sometimes far back, to make long chains and merges.
                    let back = Bool.random(using: &rng) ? Int.random(in: 1...min(5, id - 1), using: &rng) : Int.random(in: 1...(id - 1), using: &rng)
                    let p = EventID(id - back)
                    if !parents.contains(p) { parents.append(p) }
                }
            }
            reference.parents.append(parents)
            batch.append(AppendRequest(type: "t\(id % 4)", parents: parents))
            if Int.random(in: 0..<20, using: &rng) == 0 || id == count {
                // Rejected batches (the last event names a missing parent) sent alongside the good
                // one so they tend to share its commit group: rolled back inside a group that is
                // written, they must leave nothing in RocksDB or the graph.
                let bad = [AppendRequest(type: "bad", parents: [EventID(id - batch.count)]), AppendRequest(type: "bad", parents: [EventID(id + 100)])]
                let good = batch
                let store = t.store
                let rejected = await withTaskGroup(of: Bool.self) { group in
                    group.addTask { (try? await store.append(bad)) == nil }
                    group.addTask { (try? await store.append(good)) == nil ? false : true }
                    group.addTask { (try? await store.append(bad)) == nil }
                    return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
                #expect(rejected == 3, "both bad batches rejected, the good one stored; seed \(seed)")
                batch = []
            }
        }
        try check(t.store, reference, count, seed: seed)
        #expect(t.store.index.lastID == EventID(count))
        t.store.close()
        let reopened = try await t.reopen()
        defer { reopened.close() }
        #expect(reopened.index.lastID == EventID(count))
        try check(reopened, reference, count, seed: seed)
    }

    private func check(_ s: EventStore, _ reference: Reference, _ count: Int, seed: UInt64) throws {
        let ancestorSets = [Set<EventID>()] + (1...count).map { Set(reference.ancestors(EventID($0))) }
        for id in EventID(1)...EventID(count) {
            #expect(try s.parents(of: id) == reference.parents[Int(id)], "parents of \(id), seed \(seed)")
            #expect(try s.ancestors(of: id) == reference.ancestors(id), "ancestors of \(id), seed \(seed)")
            #expect(try s.descendants(of: id) == reference.descendants(id, ancestorSets), "descendants of \(id), seed \(seed)")
            #expect(try s.children(of: id) == reference.children(id), "children of \(id), seed \(seed)")
            // Links counted up to a bound: all of them at the bound, none (nil) one below it.
            for (direction, links) in [(Traversal.Direction.descendants, reference.children(id)), (.ancestors, reference.parents[Int(id)])] {
                let walk = s.traversal(direction, from: id)
                #expect(walk.links(of: id, countMax: links.count) == links, "\(direction) links of \(id) within their count, seed \(seed)")
                if !links.isEmpty {
                    #expect(walk.links(of: id, countMax: links.count - 1) == nil, "\(direction) links of \(id) past a bound, seed \(seed)")
                }
            }
            // Children past the walk's `upTo` are neither returned nor counted.
            let upTo = id + EventID(count) / 4
            let below = reference.children(id).filter { $0 <= upTo }
            #expect(s.traversal(.descendants, from: id, upTo: upTo).links(of: id, countMax: below.count) == below, "children of \(id) up to \(upTo), seed \(seed)")
            let roots = ([id] + reference.ancestors(id)).filter { reference.parents[Int($0)].isEmpty }.sorted()
            #expect(try s.reachableRoots(of: id) == roots, "roots of \(id), seed \(seed)")
        }
        let all = (1...count).map(EventID.init)
        let roots = all.filter { reference.parents[Int($0)].isEmpty }
        let heads = all.filter { reference.children($0).isEmpty }
        #expect(try s.roots() == roots)
        #expect(try s.heads() == heads)
        let stats = try s.stats()
        #expect(stats.roots == roots.count && stats.heads == heads.count, "counters, seed \(seed)")
        #expect(try s.ancestors(of: EventID(count + 1)) == nil)
        let report = try s.verify()
        #expect(report.ok, "\(report.problems)")
    }

    /// Readers walk the in-memory graph while the writer extends it: every walk sees exactly the
    /// events up to the last id it read, with all their links.
    @Test func readersSeeACompleteGraphWhileTheWriterAppends() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let store = t.store
        try await store.append([AppendRequest(type: "c")])
        let checks = await withTaskGroup(of: Int.self) { group in
            group.addTask {
                for batch in 0..<200 {
                    let first = batch * 50 + 2
                    var requests: [AppendRequest] = []
                    for i in first..<first + 50 {
                        let previous = EventID(i - 1)
                        let parents: [EventID] = i % 10 == 0 ? [previous, 1] : [previous]
                        requests.append(AppendRequest(type: "c", parents: parents))
                    }
                    _ = try? await store.append(requests)
                }
                return 0
            }
            for _ in 0..<2 {
                group.addTask {
                    var checks = 0
                    // Bounded, and yielding: the cooperative pool may have as few threads as
                    // readers, and the appending task must get to run.
                    while store.lastID < 10_001, checks < 100_000 {
                        await Task.yield()
                        let last = store.lastID
                        let ancestors = (try? store.ancestors(of: last)) ?? nil
                        #expect(ancestors?.count == Int(last) - 1, "ancestors of \(last)")
                        let children = (try? store.children(of: 1, upTo: last)) ?? nil
                        var expected: [EventID] = last >= 2 ? [2] : []
                        expected += Array(stride(from: EventID(10), through: last, by: 10))
                        #expect(children == expected, "children of 1 up to \(last)")
                        checks += 1
                    }
                    return checks
                }
            }
            return await group.reduce(0, +)
        }
        #expect(store.lastID == 10_001)
        #expect(checks > 0)
    }

    @Test func theNodeBudgetAborts() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        try await t.store.append((1...50).map { AppendRequest(type: "c", parents: $0 == 1 ? [] : [EventID($0 - 1)]) })
        #expect(try t.store.ancestors(of: 50, nodesMax: 49)?.count == 49)
        #expect(throws: LogError.self) { try t.store.ancestors(of: 50, nodesMax: 48) }
        #expect(throws: LogError.self) { try t.store.descendants(of: 1, nodesMax: 10) }
    }

    @Test func aChainTwentySixThousandDeepIsTraversedWithoutRecursion() async throws {
        let t = try await TempStore.make()
        defer { t.remove() }
        let depth = 26_500
        var next: EventID = 1
        while next <= EventID(depth) {
            let start = next
            let batch = (start..<min(start + 5_000, EventID(depth) + 1)).map { AppendRequest(type: "c", parents: $0 == 1 ? [] : [$0 - 1]) }
            try await t.store.append(batch)
            next += EventID(batch.count)
        }
        #expect(try t.store.ancestors(of: EventID(depth))?.count == depth - 1)
        #expect(try t.store.reachableRoots(of: EventID(depth)) == [1])
        #expect(try t.store.descendants(of: 1)?.count == depth - 1)
    }
}
